#pragma once

namespace strata {

// A file compiled into the binary (see strata_embed_files in cmake/strata.cmake).
struct EmbeddedFile {
  const char* name;
  const char* content;
};

}  // namespace strata
