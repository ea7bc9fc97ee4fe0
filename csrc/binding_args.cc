// binding_args.cc — argument objects → params structs, with every tensor fact checked (see
// binding_args.h).
#include "binding_args.h"

#include <algorithm>
#include <string>

#include "binding_device_buffer.h"

namespace monarch {
namespace binding {

namespace {

std::string Where(const ArgContext& ctx, const std::string& what) { return std::string(ctx.op) + ": " + what; }

// Records a host array the params point into (kept alive for async calls, re-checked at the end) and
// returns the pointer the backend must use (binding_host_memory.h: in place, or a copy the call owns).
void* Keep(ArgContext& ctx, Napi::Env env, const Napi::TypedArray& a, void* data, bool writes,
           const std::string& where, bool copyAlways = false) {
  if (ctx.keep) ctx.keep->push_back(Napi::Persistent(static_cast<Napi::Object>(a)));
  ctx.hostSpans.push_back({a, data, a.ByteLength()});
  if (!ctx.secure && !copyAlways) return data;
  return ctx.holds.Secure(env, a, data, a.ByteLength(), writes, copyAlways, where);
}

// The data of a host typed array argument; an Error naming it when its buffer is detached.
void* HostData(Napi::Env env, const Napi::TypedArray& a, const std::string& where) {
  TypedSpan s = GetTypedSpan(env, a);
  if (s.detached) ThrowError(env, where + ": its ArrayBuffer is detached (transferred away?)");
  return s.data;
}

void KeepDevice(ArgContext& ctx, const Napi::Value& v, DeviceBuffer* db) {
  ctx.deviceSpans.push_back({v.As<Napi::Object>(), db});
}

// Logical [B][S][H][D] extent of an activation; D is contiguous.
struct ActShape {
  int64_t B, S, H, D;
};

// Elements spanned by a strided [B][S][H][D] view: (B-1)·sB + (S-1)·sS + (H-1)·sH + D, or 0 when
// any dimension is 0. Throws a RangeError when the arithmetic overflows.
int64_t StridedExtent(Napi::Env env, const ActShape& s, const int64_t st[3], const std::string& name) {
  if (s.B == 0 || s.S == 0 || s.H == 0 || s.D == 0) return 0;
  int64_t a = 0, b = 0, c = 0, sum = 0;
  bool ok = MulOk(s.B - 1, st[0], &a) && MulOk(s.S - 1, st[1], &b) && MulOk(s.H - 1, st[2], &c) &&
            AddOk(a, b, &sum) && AddOk(sum, c, &sum) && AddOk(sum, s.D, &sum);
  if (!ok) ThrowRangeError(env, name + ": strided extent overflows 64 bits (strides too large)");
  return sum;
}

int64_t ReadStride(Napi::Env env, const Napi::Array& arr, uint32_t i, const std::string& name) {
  static const char* kNames[3] = {"batch", "token", "head"};
  return ToInt(env, arr.Get(i), name + ".strides[" + std::to_string(i) + "] (" + kNames[i] + ")", 0,
               kMaxSafeInteger);
}

// One NativeAct {data, strides} named `name` in `args`.
Act ReadAct(Napi::Env env, const Napi::Object& args, const char* name, DType dtype, const ActShape& shape,
            ArgContext& ctx) {
  const std::string where = Where(ctx, name);
  Napi::Value v = args.Get(name);
  if (!v.IsObject() || v.IsTypedArray() || DeviceBuffer::FromValue(env, v)) {
    ThrowTypeError(env, where + " must be an object {data, strides}, got " + DescribeValue(v));
  }
  Napi::Object act = v.As<Napi::Object>();

  Napi::Value sv = act.Get("strides");
  if (!sv.IsArray() || sv.As<Napi::Array>().Length() != 3) {
    ThrowTypeError(env, where + ".strides must be an array of 3 element strides [batch, token, head], got " +
                            DescribeValue(sv));
  }
  Napi::Array sarr = sv.As<Napi::Array>();
  int64_t st[3];
  for (uint32_t i = 0; i < 3; ++i) st[i] = ReadStride(env, sarr, i, where);

  Napi::Value data = act.Get("data");
  Act out;
  out.sB = st[0];
  out.sS = st[1];
  out.sH = st[2];
  int64_t elems = 0;
  DeviceBuffer* db = DeviceBuffer::FromValue(env, data);
  if (ctx.cuda) {
    if (!db) {
      ThrowTypeError(env, where + " must be a DeviceBuffer for a CUDA plan (" + name + ".data is " +
                              DescribeValue(data) + ")");
    }
    if (db->disposed()) ThrowError(env, where + ": DeviceBuffer was disposed");
    if (db->device() != ctx.device) {
      ThrowRangeError(env, where + " is on device " + std::to_string(db->device()) + " but the plan is on device " +
                               std::to_string(ctx.device));
    }
    size_t es = dtype_size(dtype);
    if (reinterpret_cast<uintptr_t>(db->data()) % es != 0) {
      ThrowRangeError(env, where + ": device address is not aligned to the " + dtype_name(dtype) +
                               " size of " + std::to_string(es) + " bytes");
    }
    elems = int64_t(db->byteLength() / es);
    out.data = db->data();
    KeepDevice(ctx, data, db);
  } else {
    if (db) {
      ThrowTypeError(env, where + " must be a host typed array for a CPU plan, not a DeviceBuffer");
    }
    napi_typedarray_type want = dtype == kF32 ? napi_float32_array : napi_uint16_array;
    if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != want) {
      ThrowTypeError(env, where + ".data must be a " + (dtype == kF32 ? "Float32Array" : "Uint16Array") +
                              " for " + dtype_name(dtype) + ", got " + DescribeValue(data));
    }
    Napi::TypedArray ta = data.As<Napi::TypedArray>();
    void* p = HostData(env, ta, where + ".data");
    elems = int64_t(ta.ElementLength());
    const bool writes = std::string(name) == "o" || std::string(name) == "dst";
    out.data = Keep(ctx, env, ta, p, writes, where);
  }

  int64_t extent = StridedExtent(env, shape, st, where);
  if (extent > elems) {
    ThrowRangeError(env, where + ": strided extent " + std::to_string(extent) + " elements exceeds its " +
                             (ctx.cuda ? "DeviceBuffer" : "buffer") + " of " + std::to_string(elems) +
                             " elements (shape [" + std::to_string(shape.B) + ", " + std::to_string(shape.S) +
                             ", " + std::to_string(shape.H) + ", " + std::to_string(shape.D) + "])");
  }
  return out;
}

// An optional Uint8Array mask of exactly `expected` elements; absent = undefined or null.
HostBlob ReadMask(Napi::Env env, const Napi::Object& args, const char* name, int64_t expected,
                  const char* expectedText, ArgContext& ctx) {
  Napi::Value v = args.Get(name);
  if (v.IsUndefined() || v.IsNull()) return {};
  const std::string where = Where(ctx, name);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    ThrowTypeError(env, where + " must be a Uint8Array, got " + DescribeValue(v));
  }
  Napi::Uint8Array m = v.As<Napi::Uint8Array>();
  if (int64_t(m.ElementLength()) != expected) {
    ThrowRangeError(env, where + " has " + std::to_string(m.ElementLength()) + " elements, expected " +
                             expectedText + " = " + std::to_string(expected));
  }
  const void* p = Keep(ctx, env, m, HostData(env, m, where), false, where);
  return {p, m.ByteLength()};
}

// An optional float32 per-row output (lse / entropy) with at least `needed` elements.
float* ReadRowOutput(Napi::Env env, const Napi::Object& args, const char* name, int64_t needed,
                     ArgContext& ctx) {
  Napi::Value v = args.Get(name);
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  const std::string where = Where(ctx, name);
  DeviceBuffer* db = DeviceBuffer::FromValue(env, v);
  int64_t elems = 0;
  float* ptr = nullptr;
  if (ctx.cuda) {
    if (!db) ThrowTypeError(env, where + " must be a DeviceBuffer for a CUDA plan, got " + DescribeValue(v));
    if (db->disposed()) ThrowError(env, where + ": DeviceBuffer was disposed");
    if (db->device() != ctx.device) {
      ThrowRangeError(env, where + " is on device " + std::to_string(db->device()) + " but the plan is on device " +
                               std::to_string(ctx.device));
    }
    if (reinterpret_cast<uintptr_t>(db->data()) % 4 != 0) {
      ThrowRangeError(env, where + ": device address is not aligned to 4 bytes");
    }
    elems = int64_t(db->byteLength() / 4);
    ptr = static_cast<float*>(db->data());
    KeepDevice(ctx, v, db);
  } else {
    if (db) ThrowTypeError(env, where + " must be a Float32Array for a CPU plan, not a DeviceBuffer");
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      ThrowTypeError(env, where + " must be a Float32Array, got " + DescribeValue(v));
    }
    Napi::Float32Array a = v.As<Napi::Float32Array>();
    elems = int64_t(a.ElementLength());
    ptr = static_cast<float*>(Keep(ctx, env, a, HostData(env, a, where), true, where));
  }
  if (elems < needed) {
    ThrowRangeError(env, where + " has " + std::to_string(elems) + " elements, needs B·H·Nq = " +
                             std::to_string(needed));
  }
  return ptr;
}

int ReadDim(Napi::Env env, const Napi::Object& args, const char* key, ArgContext& ctx, int64_t lo = 1,
            int64_t hi = kMaxInt32) {
  return int(ReadInt(env, args, key, Where(ctx, key), lo, hi));
}

// a·b·c·d for token / element counts; RangeError on overflow.
int64_t Product(Napi::Env env, std::initializer_list<int64_t> xs, const std::string& what) {
  int64_t r = 1;
  for (int64_t x : xs) {
    if (!MulOk(r, x, &r)) ThrowRangeError(env, what + " overflows 64 bits");
  }
  return r;
}

}  // namespace

void VerifyUnchanged(Napi::Env env, const ArgContext& ctx) {
  for (const ArgContext::HostSpan& h : ctx.hostSpans) {
    TypedSpan now = GetTypedSpan(env, h.array);
    if (now.detached || now.data != h.data || now.bytes != h.bytes) {
      ThrowError(env, Where(ctx, "a typed array argument was detached or resized while the arguments were "
                                 "being read"));
    }
  }
  for (const ArgContext::DeviceSpan& d : ctx.deviceSpans) {
    if (d.buffer->disposed()) {
      ThrowError(env, Where(ctx, "a DeviceBuffer argument was disposed while the arguments were being read"));
    }
  }
}

StageCall ReadStageArgs(Napi::Env env, const Napi::Value& argv, const PlanGeometry& g, bool needOutput,
                        ArgContext& ctx) {
  Napi::Object a = ToObject(env, argv, Where(ctx, "args"));
  StageCall c;
  MonarchParams& p = c.p;
  p.dtype = g.dtype;
  p.B = g.B;
  p.H = g.H;
  p.D = g.D;
  p.b1 = g.b1;
  p.b2 = g.b2;
  p.Aq = ReadDim(env, a, "Aq", ctx, 1, g.maxAq);
  p.Fk = ReadDim(env, a, "Fk", ctx, 1, g.maxFk);
  p.qTile0 = ReadDim(env, a, "qTile0", ctx, 0, kMaxInt32 - p.Aq);
  p.causalTiles = ReadDim(env, a, "causalTiles", ctx, 0);
  p.scale = float(ReadFiniteNumber(env, a, "scale", Where(ctx, "scale")));
  double mit = ReadFiniteNumber(env, a, "maxInvTemp", Where(ctx, "maxInvTemp"));
  if (!(mit > 0)) ThrowRangeError(env, Where(ctx, "maxInvTemp") + " must be > 0, got " + NumberText(mit));
  p.maxInvTemp = float(mit);

  const int64_t tile = int64_t(g.b1) * g.b2;  // tokens per tile (checked at plan creation)
  const int64_t nq = p.Aq * tile, nk = p.Fk * tile;
  p.q = ReadAct(env, a, "q", g.dtype, {g.B, nq, g.H, g.D}, ctx);
  p.k = ReadAct(env, a, "k", g.dtype, {g.B, nk, g.H, g.D}, ctx);
  p.v = ReadAct(env, a, "v", g.dtype, {g.B, nk, g.H, g.D}, ctx);
  if (needOutput) {
    Napi::Value o = a.Get("o");
    if (o.IsUndefined() || o.IsNull()) ThrowTypeError(env, Where(ctx, "o") + " is required by the final L-step");
    p.o = ReadAct(env, a, "o", g.dtype, {g.B, nq, g.H, g.D}, ctx);
  }
  c.keyValid = ReadMask(env, a, "keyValid", g.B * nk, "B·Fk·b1·b2", ctx);
  c.queryValid = ReadMask(env, a, "queryValid", g.B * nq, "B·Aq·b1·b2", ctx);
  p.keyValid = static_cast<const uint8_t*>(c.keyValid.data);
  p.queryValid = static_cast<const uint8_t*>(c.queryValid.data);
  return c;
}

DenseCall ReadDenseArgs(Napi::Env env, const Napi::Value& argv, ArgContext& ctx) {
  Napi::Object a = ToObject(env, argv, Where(ctx, "args"));
  DenseCall c;
  DenseParams& p = c.p;
  p.dtype = DType(ReadInt(env, a, "dtype", Where(ctx, "dtype"), 0, 2));
  p.B = ReadDim(env, a, "B", ctx);
  p.H = ReadDim(env, a, "H", ctx);
  p.D = ReadDim(env, a, "D", ctx);
  p.Nq = ReadDim(env, a, "Nq", ctx);
  p.Nk = ReadDim(env, a, "Nk", ctx);
  p.q0 = ReadDim(env, a, "q0", ctx, 0);
  p.causalChunk = ReadDim(env, a, "causalChunk", ctx, 0);
  p.scale = float(ReadFiniteNumber(env, a, "scale", Where(ctx, "scale")));
  p.q = ReadAct(env, a, "q", p.dtype, {p.B, p.Nq, p.H, p.D}, ctx);
  p.k = ReadAct(env, a, "k", p.dtype, {p.B, p.Nk, p.H, p.D}, ctx);
  p.v = ReadAct(env, a, "v", p.dtype, {p.B, p.Nk, p.H, p.D}, ctx);
  p.o = ReadAct(env, a, "o", p.dtype, {p.B, p.Nq, p.H, p.D}, ctx);
  c.keyValid = ReadMask(env, a, "keyValid", Product(env, {p.B, p.Nk}, Where(ctx, "B·Nk")), "B·Nk", ctx);
  p.keyValid = static_cast<const uint8_t*>(c.keyValid.data);
  const int64_t rows = Product(env, {p.B, p.H, p.Nq}, Where(ctx, "B·H·Nq"));
  p.lse = ReadRowOutput(env, a, "lse", rows, ctx);
  p.entropy = ReadRowOutput(env, a, "entropy", rows, ctx);
  return c;
}

GatherCall ReadGatherArgs(Napi::Env env, const Napi::Value& argv, ArgContext& ctx) {
  Napi::Object a = ToObject(env, argv, Where(ctx, "args"));
  GatherCall c;
  GatherParams& p = c.p;
  p.dtype = DType(ReadInt(env, a, "dtype", Where(ctx, "dtype"), 0, 2));
  p.B = ReadDim(env, a, "B", ctx);
  p.H = ReadDim(env, a, "H", ctx);
  p.D = ReadDim(env, a, "D", ctx);

  Napi::Value mv = a.Get("map");
  if (!mv.IsTypedArray() || mv.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    ThrowTypeError(env, Where(ctx, "map") + " must be an Int32Array, got " + DescribeValue(mv));
  }
  Napi::Int32Array map = mv.As<Napi::Int32Array>();
  if (int64_t(map.ElementLength()) > kMaxInt32) {
    ThrowRangeError(env, Where(ctx, "map") + " has more than 2^31-1 entries");
  }
  p.nDst = int(map.ElementLength());
  // Snapshot: the entries decide which src tokens are read, so they must not change after the check.
  const int32_t* m = static_cast<const int32_t*>(Keep(ctx, env, map, HostData(env, map, Where(ctx, "map")), false,
                                                      Where(ctx, "map"), /*copyAlways=*/true));
  int64_t maxSrc = -1;  // src tokens read: map entries >= 0 (negative = write zeros)
  for (int i = 0; i < p.nDst; ++i) maxSrc = std::max<int64_t>(maxSrc, m[i]);
  c.map = {m, map.ByteLength()};
  p.map = m;

  p.src = ReadAct(env, a, "src", p.dtype, {p.B, maxSrc + 1, p.H, p.D}, ctx);
  p.dst = ReadAct(env, a, "dst", p.dtype, {p.B, p.nDst, p.H, p.D}, ctx);
  return c;
}

}  // namespace binding
}  // namespace monarch
