// Bootstrap of an NCCL communicator's unique id over a TCP rendezvous (node:net): rank 0 listens and
// hands its 128-byte id to every other rank, which connect (retrying until rank 0 is up) and tell their
// rank and the group size, so a rank started with another size fails with a clear error on both sides.
// Wire: client → server 8 bytes (rank, size: uint32 LE); server → client 1 status byte (0 = ok,
// 1 = size mismatch, 2 = duplicate rank) + 4 bytes (the server's size) + 128 bytes (the id when ok).
import * as net from 'node:net';

export const ID_BYTES = 128;

/** Rank 0: serves `id` to the size − 1 other ranks; resolves once all have it. */
export function serveUniqueId(id: Uint8Array, host: string, port: number, size: number, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const served = new Set<number>();
    const sockets = new Set<net.Socket>();
    let settled = false;
    const finish = (e?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      server.close();
      if (e) for (const s of sockets) s.destroy();  // on success every reply was sent with end()
      if (e) reject(e); else resolve();
    };
    const timer = setTimeout(() => {
      const missing = [...Array(size).keys()].filter((r) => r > 0 && !served.has(r));
      finish(new Error(`NCCL rendezvous on ${host}:${port} timed out after ${timeoutMs} ms: rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')} never connected`));
    }, timeoutMs);
    const server = net.createServer((sock) => {
      sockets.add(sock);
      let buf = Buffer.alloc(0);
      sock.on('error', () => sockets.delete(sock));
      sock.on('data', (chunk) => {
        buf = Buffer.concat([buf, chunk]);
        if (buf.length < 8) return;
        const rank = buf.readUInt32LE(0), theirSize = buf.readUInt32LE(4);
        const reply = Buffer.alloc(5 + ID_BYTES);
        reply.writeUInt32LE(size, 1);
        if (theirSize !== size) reply[0] = 1;
        else if (rank === 0 || rank >= size || served.has(rank)) reply[0] = 2;
        else Buffer.from(id.buffer, id.byteOffset, ID_BYTES).copy(reply, 5);
        sock.end(reply);
        sockets.delete(sock);  // end() flushes the reply; finish() destroys only the others
        if (reply[0] === 1) finish(new RangeError(`NCCL rendezvous: rank ${rank} was started with ${theirSize} ranks, rank 0 with ${size}`));
        else if (reply[0] === 2) finish(new RangeError(`NCCL rendezvous: rank ${rank} connected twice or is out of range 1..${size - 1}`));
        else {
          served.add(rank);
          if (served.size === size - 1) sock.once('close', () => finish());
        }
      });
    });
    server.on('error', (e) => finish(new Error(`NCCL rendezvous: rank 0 cannot listen on ${host}:${port}: ${e.message}`)));
    if (size === 1) { finish(); return; }
    server.listen(port, host);
  });
}

/** Ranks 1..size−1: fetch the id from rank 0 at host:port, retrying until it listens or the deadline. */
export function fetchUniqueId(host: string, port: number, rank: number, size: number, timeoutMs: number): Promise<Uint8Array> {
  const deadline = Date.now() + timeoutMs;
  const attempt = (): Promise<Uint8Array> => new Promise<Uint8Array>((resolve, reject) => {
    const sock = net.connect(port, host);
    let buf = Buffer.alloc(0);
    const hello = Buffer.alloc(8);
    hello.writeUInt32LE(rank, 0);
    hello.writeUInt32LE(size, 4);
    sock.setTimeout(Math.max(deadline - Date.now(), 1));
    sock.on('connect', () => sock.write(hello));
    sock.on('data', (c) => { buf = Buffer.concat([buf, c]); });
    sock.on('timeout', () => { sock.destroy(); reject(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })); });
    sock.on('error', reject);
    sock.on('end', () => {
      if (buf.length < 5) { reject(Object.assign(new Error('rank 0 closed the connection early'), { code: 'ECONNRESET' })); return; }
      const status = buf[0], theirs = buf.readUInt32LE(1);
      if (status === 1) reject(new RangeError(`NCCL rendezvous: this rank (${rank}) was started with ${size} ranks, rank 0 with ${theirs}`));
      else if (status === 2) reject(new RangeError(`NCCL rendezvous: rank ${rank} is a duplicate or out of range 1..${theirs - 1}`));
      else if (buf.length < 5 + ID_BYTES) reject(new Error('NCCL rendezvous: short reply from rank 0'));
      else resolve(new Uint8Array(buf.subarray(5, 5 + ID_BYTES)));
    });
  });
  const loop = async (): Promise<Uint8Array> => {
    for (;;) {
      try {
        return await attempt();
      } catch (e) {
        const code = (e as { code?: string }).code;
        const retry = code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'ENOENT';
        if (!retry || Date.now() >= deadline) {
          if (e instanceof RangeError) throw e;
          throw new Error(`NCCL rendezvous: rank ${rank} could not get the id from rank 0 at ${host}:${port} within ${timeoutMs} ms (${(e as Error).message}); is rank 0 running?`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };
  return loop();
}
