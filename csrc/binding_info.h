// binding_info.h — module-level functions: info() (what was compiled in, what the CUDA runtime sees,
// CPU threads) and setCpuThreads(n).
#pragma once

#include "binding_common.h"

namespace monarch {
namespace binding {

Napi::Value Info(const Napi::CallbackInfo& info);
void SetCpuThreads(const Napi::CallbackInfo& info);

}  // namespace binding
}  // namespace monarch
