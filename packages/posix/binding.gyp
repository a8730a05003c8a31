{
  'targets': [
    {
      'target_name': 'posix',
      'sources': ['src/posix.c', 'src/aes-gcm.c', 'src/scrypt.c', 'src/gear-cut.c'],
      'defines': ['NAPI_VERSION=8', '_GNU_SOURCE', '_FILE_OFFSET_BITS=64'],
      'cflags': ['-std=gnu11', '-Wall', '-Wextra', '-Wno-unused-parameter', '-fvisibility=hidden'],
      'ldflags': ['-Wl,-z,noexecstack', '-Wl,-z,relro', '-Wl,-z,now'],
    },
  ],
}
