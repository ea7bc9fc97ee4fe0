// monarch.h — the framework-free contract shared by the CPU backend (cpu/*.cc), the CUDA
// backend (cuda/*/*.cu) and the Node binding (csrc/addon*.cc). No napi.h and no CUDA headers here.
//
// Math: docs/ALGORITHMS.md (cited as §A.2, §B.3, §C.3 ...).
//
// ---------------------------------------------------------------------------------------------
// Tile order. Every Monarch variant is computed as *tiled Monarch* (§B.3):
//   the query sequence is Aq tiles, the key sequence Fk tiles, each tile b1 rows × b2 columns;
//   token t of a sequence (in tile order) = (tile·b1 + i)·b2 + j,  i ∈ [b1], j ∈ [b2].
//   - MonarchAttention on a 1-D sequence (§A): one tile, b1 = m = N/b blocks, b2 = b (block size).
//   - MonarchRT (§B.2), fTied = hReduce = wReduce = 1: tile = frame, b1 = h, b2 = w (raster order).
//   - VMonarch frames-as-blocks (§C.2): tile = group of frames, b1 = frames per tile, b2 = h·w.
//   Layouts whose tile order differs from the token order (padding, hReduce/wReduce > 1) are gathered
//   into tile order first with gather_tokens() and scattered back afterwards.
//
// Stage buffers (the workspace; contiguous, owned by the caller; "st" = storage dtype of q):
//   aR [B][H][Aq][Fk][b1 (k)][b2 (j)][D]  st    R-step queries  (§B.3: Σ_i L·Q)
//   cR [B][H][Aq][Fk][b1 (k)][b2 (j)]     f32   R-step column masses (Σ_i L); temperature 1/cR
//   aL [B][H][Aq][Fk][b2 (j)][b1 (k)][D]  st    Σ_l R·K   (unscaled: the L logit is s·⟨q, aL⟩ − cL)
//   cL [B][H][Aq][Fk][b2 (j)][b1 (k)]     f32   Σ_l R log R (natural log, ≤ 0); +INF marks a key row
//                                               with no valid key (L logit −∞, §A.4 fix)
//   y  [B][H][Aq][Fk][b2 (j)][b1 (k)][D]  st    Σ_l R·V
// Pairs (a, f) that block-causal masking forbids are skipped by both steps; their buffer entries
// are left unwritten and never read.
// ---------------------------------------------------------------------------------------------
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

// Helpers shared by host code and CUDA kernels: __host__ __device__ under nvcc, plain inline elsewhere
// (this header stays free of CUDA headers).
#if defined(__CUDACC__)
#define MONARCH_HOST_DEVICE __host__ __device__
#else
#define MONARCH_HOST_DEVICE
#endif

namespace monarch {

enum DType : int { kF32 = 0, kF16 = 1, kBF16 = 2 };

inline size_t dtype_size(DType t) { return t == kF32 ? 4 : 2; }
inline const char* dtype_name(DType t) {
  return t == kF32 ? "float32" : t == kF16 ? "float16" : "bfloat16";
}

// Outcome of a backend call. Backends never abort or throw across this boundary for a condition a
// user can cause; they return a message naming the stage (and the CUDA error, on the GPU).
struct Status {
  bool ok = true;
  std::string message;
  static Status Ok() { return {}; }
  static Status Error(std::string m) { return {false, std::move(m)}; }
};

// A 4-D activation of logical shape [B][S][H][D]; D is contiguous (stride 1).
// Strides are in elements. BSHD contiguous: sB = S·H·D, sS = H·D, sH = D.
//                          BHSD contiguous: sB = H·S·D, sH = S·D, sS = D.
struct Act {
  void* data = nullptr;
  int64_t sB = 0, sS = 0, sH = 0;
};

// One tiled-Monarch problem: geometry, inputs, output and workspace (one params struct per operation).
struct MonarchParams {
  DType dtype = kF32;      // storage dtype of q, k, v, o, aR, aL, y; accumulation is always fp32
  int B = 1, H = 1, D = 64;
  int b1 = 1, b2 = 1;      // tile rows (L side, "blocks") and tile columns (R side, "block size")
  int Aq = 1;              // query tiles in this call
  int Fk = 1;              // key tiles
  int qTile0 = 0;          // global index of query tile 0 (KV-cache step: tiles before it are cached)
  int causalTiles = 0;     // C > 0: pair (a, f) allowed iff f / C <= (qTile0 + a) / C; 0 = all pairs
  float scale = 0.f;       // s (softmax scale), usually 1/sqrt(D)
  float maxInvTemp = 1e4f; // clamp of the R temperature 1/cR for T >= 2 (§A.5, MonarchRT's 1e4)
  Act q, k, v;             // q: [B][Aq·b1·b2][H][D], k, v: [B][Fk·b1·b2][H][D]  (tile order)
  Act o;                   // output [B][Aq·b1·b2][H][D] (written by the final L-step)
  const uint8_t* keyValid = nullptr;    // [B][Fk·b1·b2], 1 = valid key; null = all valid
  const uint8_t* queryValid = nullptr;  // [B][Aq·b1·b2], 1 = valid query (non-final L-step masks the
                                        // L columns of invalid queries, §A.4); null = all valid
  void* aR = nullptr;  float* cR = nullptr;   // workspace, layouts above
  void* aL = nullptr;  float* cL = nullptr;
  void* y = nullptr;
  int maxCtas = 0;     // CUDA launch shape only: the persistent sm_90a step kernels take at most this many CTAs
                       // (0: one per SM); final_step sets it when it runs an R and an L kernel side by side
};

// Dense softmax attention with optional per-row LSE and entropy (§C.3 streaming recurrence).
struct DenseParams {
  DType dtype = kF32;
  int B = 1, H = 1, D = 64;
  int Nq = 1, Nk = 1;
  int q0 = 0;              // position of query row 0 within the key sequence (causal offset)
  int causalChunk = 0;     // > 0: query at position p = q0 + n sees keys [0, (p / causalChunk + 1)·causalChunk)
  float scale = 0.f;
  Act q, k, v, o;          // q/o: [B][Nq][H][D], k/v: [B][Nk][H][D]
  const uint8_t* keyValid = nullptr;  // [B][Nk]; a row with no valid key outputs 0, lse −INF, entropy 0
  float* lse = nullptr;     // [B][H][Nq] natural-log LSE of the scaled logits, or null
  float* entropy = nullptr; // [B][H][Nq] −Σ p log p (≥ 0), or null
};

// Gather tokens: dst token t = src token map[t] for every t < nDst; map[t] < 0 writes zeros.
// Used for padding (§A.4) and for tile orders that differ from the input order (§B.2).
struct GatherParams {
  DType dtype = kF32;
  int B = 1, H = 1, D = 64;
  int nDst = 0;
  const int32_t* map = nullptr;  // [nDst] (host pointer on the CPU, device pointer on CUDA)
  Act src, dst;
};

// Sizes (in elements) of the workspace buffers for a problem.
inline int64_t ws_aR_elems(const MonarchParams& p) {
  return int64_t(p.B) * p.H * p.Aq * p.Fk * p.b1 * p.b2 * p.D;
}
inline int64_t ws_c_elems(const MonarchParams& p) {
  return int64_t(p.B) * p.H * p.Aq * p.Fk * p.b1 * p.b2;
}

// True when block-causal masking allows query tile a (local) to see key tile f.
MONARCH_HOST_DEVICE inline bool pair_allowed(const MonarchParams& p, int a, int f) {
  return p.causalTiles <= 0 || f / p.causalTiles <= (p.qTile0 + a) / p.causalTiles;
}

// The key tiles query tile a (local) may see form a prefix [0, allowed_key_tiles(p, a)), at least 1:
// f is allowed iff pair_allowed(p, a, f).
MONARCH_HOST_DEVICE inline int allowed_key_tiles(const MonarchParams& p, int a) {
  if (p.causalTiles <= 0) return p.Fk;
  const int lim = ((p.qTile0 + a) / p.causalTiles + 1) * p.causalTiles;
  return lim < p.Fk ? lim : p.Fk;
}

// ---------------------------------------------------------------------------------------------
// Stage semantics (identical on every backend):
//
// r_step(p, first, last)                                          §A.2 R-step, §B.3, §C.3
//   For every allowed pair (a, f), key row k ∈ [b1], column j ∈ [b2]:
//     first: aR = q[a, k, j] (L = I), cR = 1   — aR/cR buffers are not read
//     else : aR = aR[a,f,k,j], cR = cR[a,f,k,j]; invT = cR > 0 ? min(1/cR, maxInvTemp) : maxInvTemp
//     x_l = s·⟨aR, k[f,k,l]⟩·invT for valid keys l ∈ [b2] (−∞ for invalid)
//     R = softmax_l(x) with the true row max; a row with no valid key: aL = 0, y = 0, cL = +INF
//     aL[a,f,j,k] = Σ_l R·k[f,k,l];  cL[a,f,j,k] = Σ_l R·log R;  last: y[a,f,j,k] = Σ_l R·v[f,k,l]
// l_step(p, final)                                                §A.2 L-step, §B.3
//   For every query (a, i, j): logits over allowed (f, k): u = s·⟨q[a,i,j], aL[a,f,j,k]⟩ − cL[a,f,j,k]
//     L = softmax_(f,k)(u)  (cL = +INF ⇒ L = 0)
//     final: o[a,i,j] = Σ_(f,k) L·y[a,f,j,k]
//     else : with L zeroed for invalid queries (queryValid), for every allowed (a, f, k, j):
//            aR[a,f,k,j] = Σ_i L[a,f,j,k,i]·q[a,i,j];  cR[a,f,k,j] = Σ_i L[a,f,j,k,i]
// dense(p): o = softmax(s·q·kᵀ, masked)·v, lse and entropy per row when asked.
// ---------------------------------------------------------------------------------------------

namespace cpu {
// Threads used by the CPU backend (0 = hardware concurrency). Work is split over B × H × tiles.
void set_num_threads(int n);
int num_threads();
// Thread count of the CPU backend's calls made on the current thread while this object lives
// (n > 0; n = 0 leaves the process-wide setting): a plan's `threads` applies to that plan's calls
// only, whichever host thread (event loop or libuv worker) runs them.
class ThreadsScope {
 public:
  explicit ThreadsScope(int n);
  ~ThreadsScope();
  ThreadsScope(const ThreadsScope&) = delete;
  ThreadsScope& operator=(const ThreadsScope&) = delete;

 private:
  int saved_;
};
Status r_step(const MonarchParams& p, bool first, bool last);
Status l_step(const MonarchParams& p, bool final);
Status dense(const DenseParams& p);
Status gather_tokens(const GatherParams& p);
}  // namespace cpu

// Host-side dtype conversion (round-to-nearest-even; NaN preserved).
uint16_t f32_to_bf16(float x);
float bf16_to_f32(uint16_t x);
uint16_t f32_to_f16(float x);
float f16_to_f32(uint16_t x);

}  // namespace monarch
