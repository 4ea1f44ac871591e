#include "common/policy/client_settings.h"

#include <catch2/catch.hpp>

namespace strata::policy {
namespace {

v1::SiteBundle Bundle() {
  v1::SiteBundle b;
  b.mutable_settings()->set_policy_poll_seconds(3600);
  b.mutable_settings()->set_inventory_seconds(86400);
  b.mutable_settings()->set_heartbeat_seconds(7200);
  b.mutable_settings()->set_splay_seconds(300);
  auto* fast = b.add_custom_settings();
  fast->set_name("fast poll");
  fast->set_priority(5);
  fast->set_policy_poll_seconds(60);
  auto* servers = b.add_custom_settings();
  servers->set_name("servers");
  servers->set_priority(1);
  servers->set_policy_poll_seconds(600);
  servers->set_splay_seconds(0);
  auto* tie = b.add_custom_settings();
  tie->set_name("another at 5");
  tie->set_priority(5);
  tie->set_policy_poll_seconds(120);
  tie->set_inventory_seconds(3600);
  return b;
}

TEST_CASE("no custom settings: the default as is") {
  const v1::SiteBundle b = Bundle();
  v1::ClientSettings s = EffectiveSettings(b, {});
  CHECK(s.policy_poll_seconds() == 3600);
  CHECK(s.inventory_seconds() == 86400);
  CHECK(s.heartbeat_seconds() == 7200);
  CHECK(s.splay_seconds() == 300);
  CHECK(PolicyVersion(s) == PolicyVersion(b.settings()));
}

TEST_CASE("a custom setting overrides only the fields it sets") {
  v1::ClientSettings s = EffectiveSettings(Bundle(), {"fast poll"});
  CHECK(s.policy_poll_seconds() == 60);
  CHECK(s.inventory_seconds() == 86400);
  CHECK(s.splay_seconds() == 300);
}

TEST_CASE("per field, the highest priority (smallest number) that sets it wins") {
  v1::ClientSettings s = EffectiveSettings(Bundle(), {"fast poll", "servers"});
  CHECK(s.policy_poll_seconds() == 600);  // servers (1) over fast poll (5)
  CHECK(s.splay_seconds() == 0);          // an explicit zero is set
  CHECK(s.inventory_seconds() == 86400);
}

TEST_CASE("equal priorities: the name first in byte order wins, whatever the order given") {
  v1::ClientSettings a = EffectiveSettings(Bundle(), {"fast poll", "another at 5"});
  v1::ClientSettings b = EffectiveSettings(Bundle(), {"another at 5", "fast poll"});
  CHECK(a.policy_poll_seconds() == 120);  // "another at 5" < "fast poll"
  CHECK(a.inventory_seconds() == 3600);
  CHECK(PolicyVersion(a) == PolicyVersion(b));
}

TEST_CASE("names the bundle does not hold are ignored") {
  v1::ClientSettings s = EffectiveSettings(Bundle(), {"deleted meanwhile"});
  CHECK(PolicyVersion(s) == PolicyVersion(Bundle().settings()));
}

TEST_CASE("the version follows the settings, not the bundle") {
  v1::SiteBundle b = Bundle();
  const std::string before = PolicyVersion(EffectiveSettings(b, {"fast poll"}));
  b.mutable_settings()->set_policy_poll_seconds(1800);  // hidden by fast poll
  CHECK(PolicyVersion(EffectiveSettings(b, {"fast poll"})) == before);
  b.mutable_settings()->set_heartbeat_seconds(60);  // not hidden
  CHECK(PolicyVersion(EffectiveSettings(b, {"fast poll"})) != before);
  CHECK(ContentVersion("a") != ContentVersion("b"));
  CHECK(ContentVersion("") == "cbf29ce484222325");  // FNV-1a offset basis
}

}  // namespace
}  // namespace strata::policy
