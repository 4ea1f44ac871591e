#pragma once

// The classes and attributes of the query language (query.h), for its
// parser, its SQL and its evaluation over a device's facts. Internal to
// common/collections.

#include <vector>

namespace strata::collections {

enum class Type { kText, kVersion, kNumber, kBool };

const char* TypeName(Type t);

struct Attr {
  const char* name;
  const char* column;  // an expression over the class's alias, "%" standing for it ("" live)
  Type type;
};

struct Class {
  const char* name;
  const char* table;  // nullptr: the devices row itself (alias d), or a live class
  std::vector<Attr> attrs;
  // Read on the client when a live query asks (processes, sockets...):
  // not in the site's database, so not in collections.
  bool live = false;
  // One row per device (device, os, system, memory, os_update).
  bool single = false;
};

// Inventory classes first, then the live ones.
const std::vector<Class>& Classes();

}  // namespace strata::collections
