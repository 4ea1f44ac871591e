#include "common/site/site_main.h"

int main(int argc, char** argv) {
  return strata::site::SiteMain(strata::v1::SITE_TYPE_SECONDARY, argc, argv);
}
