// Ulysses partitioning (docs/API.md "Sequence parallelism"): which heads each rank attends, and the
// byte regions of the two all-to-alls between sequence shards [B][N/P][H][D] and head groups
// [B][N][H_r][D] (BSHD; BHSD analogously), in one place for both directions and every communicator.
import type { Region } from './comm';
import type { TensorLayout } from './types';

/** Contiguous head groups: rank r attends heads [start[r], start[r] + count[r]). */
export interface HeadGroups {
  start: number[];
  count: number[];
}

/**
 * H heads over P ranks in contiguous groups, the first H mod P ranks one head more (uneven groups, no
 * padding): 12 heads on 8 ranks → 2,2,2,2,1,1,1,1. Ranks get 0 heads when H < P.
 */
export function headGroups(H: number, P: number): HeadGroups {
  const q = Math.floor(H / P), rem = H % P;
  const count = Array.from({ length: P }, (_, r) => q + (r < rem ? 1 : 0));
  const start: number[] = [];
  let s = 0;
  for (const c of count) { start.push(s); s += c; }
  return { start, count };
}

const EMPTY: Region = Object.freeze({ offset: 0, rows: 0, rowBytes: 0, pitch: 0 });

function region(offset: number, rows: number, rowBytes: number, pitch: number): Region {
  if (rows === 0 || rowBytes === 0) return EMPTY;
  return { offset, rows, rowBytes, pitch: rows === 1 ? rowBytes : pitch };
}

/** The regions of one rank: `shard` side (sequence shard, all heads) and `group` side (all tokens, own heads). */
export interface ShardRegions {
  /** Per peer p: the part of this rank's shard holding p's heads (sent to p going in, received from p coming back). */
  shard: Region[];
  /** Per peer p: the part of this rank's head-group tensor holding p's tokens. */
  group: Region[];
}

/**
 * Regions for a rank of P with `n` = N/P tokens per shard, dtype size E. Shard tensor: [B][n][H][D]
 * (BSHD) or [B][H][n][D] (BHSD); group tensor: [B][N][Hr][D] or [B][Hr][N][D], Hr = this rank's heads.
 * The linear order of a shard region for peer p ([B][n][H_p][D] or [B][H_p][n][D]) equals that of the
 * group region on p for this rank, so the same bytes travel both ways.
 */
export function shardRegions(layout: TensorLayout, B: number, n: number, H: number, D: number, E: number,
  rank: number, g: HeadGroups): ShardRegions {
  const P = g.count.length, N = n * P, Hr = g.count[rank];
  const shard: Region[] = [], group: Region[] = [];
  for (let p = 0; p < P; p++) {
    const h0 = g.start[p], hp = g.count[p];
    if (layout === 'BSHD') {
      shard.push(region(h0 * D * E, B * n, hp * D * E, H * D * E));
      group.push(region(p * n * Hr * D * E, B, n * Hr * D * E, N * Hr * D * E));
    } else {
      shard.push(region(h0 * n * D * E, B, hp * n * D * E, H * n * D * E));
      group.push(region(p * n * D * E, B * Hr, n * D * E, N * D * E));
    }
  }
  return { shard, group };
}
