// A TCP proxy that can cut its connections, to test reconnecting.
import { createConnection, createServer, type Socket } from 'node:net';

export interface TcpProxy {
  port: number;
  /** Bytes forwarded from clients to the server so far. */
  readonly bytesUp: number;
  /** How many times connections were cut. */
  readonly cuts: number;
  /** Client connections accepted so far: each is one attempt of the client to connect. */
  readonly accepted: number;
  /** Client connections open now (neither side has closed them). */
  readonly open: number;
  /** Cuts every open connection once `bytesUp` passes `bytes` (counted from now). */
  cutAfter(bytes: number): void;
  /** Cuts every open connection now. */
  cutAll(): void;
  /** Open connections stop forwarding anything, without closing (a silent network); new ones work. */
  stallAll(): void;
  close(): Promise<void>;
}

/** `delayMs` holds every chunk that long in each direction, to imitate a network's latency. */
export async function startTcpProxy(targetPort: number, host = '127.0.0.1', delayMs = 0): Promise<TcpProxy> {
  const send = (socket: Socket, chunk: Buffer) => (delayMs > 0 ? setTimeout(() => socket.write(chunk), delayMs) : socket.write(chunk));
  const sockets = new Set<Socket>();
  let bytesUp = 0;
  let cutAt: number | undefined;
  let cuts = 0;
  let accepted = 0;
  const clients = new Set<Socket>();
  const cutAll = () => {
    cuts++;
    for (const socket of sockets) socket.destroy();
    sockets.clear();
  };
  const stalled = new WeakSet<Socket>();
  const server = createServer((client) => {
    const upstream = createConnection({ host, port: targetPort });
    accepted++;
    clients.add(client);
    sockets.add(client);
    sockets.add(upstream);
    client.on('data', (chunk: Buffer) => {
      bytesUp += chunk.length;
      if (cutAt !== undefined && bytesUp >= cutAt) {
        cutAt = undefined;
        cutAll();
        return;
      }
      if (!stalled.has(client)) send(upstream, chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!stalled.has(client)) send(client, chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
      clients.delete(client);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    port,
    get bytesUp() {
      return bytesUp;
    },
    get cuts() {
      return cuts;
    },
    get accepted() {
      return accepted;
    },
    get open() {
      return clients.size;
    },
    cutAfter(bytes) {
      cutAt = bytesUp + bytes;
    },
    cutAll,
    stallAll() {
      for (const socket of sockets) stalled.add(socket);
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
