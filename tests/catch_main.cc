// The one compiled Catch2 main every test binary links with.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
