// stratactl: the admin tool. Talks gRPC (mutual TLS) to a provider at the
// CAS or a primary; see docs/admin-guide.md and `stratactl --help`.

#include "provider/stratactl/command.h"

int main(int argc, char** argv) { return strata::ctl::Main(argc, argv); }
