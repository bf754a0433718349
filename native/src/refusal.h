// A refused operation: the addon's one error type. The JavaScript glue turns it into an
// Error carrying `operation` and `errno`, which src/io/native.ts maps to BackendError.
#pragma once
#include <stdexcept>
#include <string>

namespace pc {

struct Refusal : std::runtime_error {
  std::string operation;
  std::string errno_name;  // "" when the refusal is ours, not the kernel's
  Refusal(std::string op, std::string message, std::string err = "")
      : std::runtime_error(std::move(message)), operation(std::move(op)), errno_name(std::move(err)) {}
};

}  // namespace pc
