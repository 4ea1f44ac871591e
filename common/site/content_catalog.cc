#include "common/site/content_catalog.h"

#include "common/base/status.h"

namespace strata::site {

absl::StatusOr<std::vector<VersionKey>> NewestVersions(store::Connection& conn,
                                                       const std::string& dp) {
  const std::string complete =
      "v.files = (SELECT count(*) FROM package_files f WHERE f.package = v.package AND "
      "f.version = v.version)";
  store::Params params;
  std::string where = complete;
  if (!dp.empty()) {
    where +=
        " AND v.package IN (SELECT package FROM package_distributions WHERE (target_type = "
        "'dp' AND target = $1) OR (target_type = 'group' AND target IN (SELECT group_name "
        "FROM dp_group_members WHERE dp = $1)))";
    params.push_back(dp);
  }
  ASSIGN_OR_RETURN(store::Result r,
                   conn.Exec("SELECT DISTINCT ON (v.package) v.package, v.version, v._hlc FROM "
                             "package_versions v WHERE " +
                                 where + " ORDER BY v.package, v.version DESC",
                             params));
  std::vector<VersionKey> out;
  for (size_t i = 0; i < r.size(); ++i)
    out.push_back({r.GetString(i, 0), r.GetInt(i, 1), r.GetInt(i, 2)});
  return out;
}

absl::StatusOr<v1::ContentManifest> ReadManifest(store::Connection& conn, const VersionKey& key) {
  ASSIGN_OR_RETURN(store::Result f,
                   conn.Exec("SELECT path, size, mode, sha256, chunk_bytes, chunk_sha256 FROM "
                             "package_files WHERE package = $1 AND version = $2 ORDER BY path",
                             {key.package, std::to_string(key.version)}));
  v1::ContentManifest m;
  m.set_package(key.package);
  m.set_version(key.version);
  for (size_t i = 0; i < f.size(); ++i) {
    v1::ContentFile* file = m.add_files();
    file->set_path(f.GetString(i, 0));
    file->set_size(f.GetInt(i, 1));
    file->set_mode(static_cast<uint32_t>(f.GetInt(i, 2)));
    file->set_sha256(f.GetString(i, 3));
    file->set_chunk_bytes(f.GetInt(i, 4));
    file->set_chunk_sha256(f.GetString(i, 5));
  }
  return m;
}

absl::StatusOr<std::optional<LinkLimits>> ContentLinkOf(store::Connection& conn,
                                                        const std::string& target) {
  ASSIGN_OR_RETURN(store::Result r, conn.Exec("SELECT max_bytes_per_second, hours FROM "
                                              "content_links WHERE target = $1",
                                              {target}));
  if (r.empty()) return std::nullopt;
  return LinkLimits{r.GetInt(0, 0), r.GetString(0, 1)};
}

absl::StatusOr<int64_t> ValidationRequestedMs(store::Connection& conn, const std::string& site,
                                              const std::string& location) {
  ASSIGN_OR_RETURN(store::Result r,
                   conn.Exec("SELECT (extract(epoch FROM requested_at) * 1000)::bigint FROM "
                             "content_validation_requests WHERE site_code = $1 AND location = $2",
                             {site, location}));
  return r.empty() ? 0 : r.GetInt(0, 0);
}

}  // namespace strata::site
