// Test harness for SFTP, imported as `@cairn/target-sftp/testing`: a throwaway OpenSSH sshd
// (started and stopped by its pid) and a TCP proxy that can cut or stall connections. Used by
// this plugin's tests, the CLI tests in test/sftp and the benchmark.
export { KEY_PASSPHRASE, SSHD, freePort, sshdAvailable, sshKeygenFingerprint, startSshd, type SshServer, type SshdOptions } from './sshd.js';
export { startTcpProxy, type TcpProxy } from './tcp-proxy.js';
