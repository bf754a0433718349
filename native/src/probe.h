// The host support probe of reference section 10, as a list of named checks so that a
// refusal says which check failed and why.
#pragma once
#include <string>
#include <vector>

#include "guest_memory.h"

namespace pc {

struct SupportCheck {
  std::string name;
  bool ok;
  std::string detail;
};

struct SupportReport {
  bool ok = true;
  std::vector<SupportCheck> checks;
  std::string reason;  // the first failed check's detail
};

// Runs every check (stopping early only where later checks need the fd). Never throws.
SupportReport probe_host(const std::vector<BlockLayout>& layouts);

}  // namespace pc
