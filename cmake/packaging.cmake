# Debian packages (CPack's DEB generator), one per role:
#
#   strata-site      strata-cas, strata-primary, strata-secondary
#   strata-mp        strata-mp
#   strata-dp        strata-dp (depends on nginx)
#   strata-provider  strata-provider, stratactl and strata-pki (the root CA's tool)
#   strata-agent     strata-agent
#
# Each carries its binaries (/usr/bin), systemd units (/usr/lib/systemd/system),
# a sysusers.d and a tmpfiles.d file (its system user, /etc/strata and
# /var/lib/strata/ROLE), example configurations, and maintainer scripts
# made from deploy/packaging/*.in. Build them with
#   cpack --config build/CPackConfig.cmake -B OUT
# (tests/packaging_test.sh does, and installs them into a throwaway root).

set(STRATA_PACKAGING ${PROJECT_SOURCE_DIR}/deploy/packaging)

# strata_package(ROLE TARGETS t... UNITS u... EXAMPLES e... [DEPENDS "deb, deb"])
function(strata_package role)
  cmake_parse_arguments(ARG "" "DEPENDS;RECOMMENDS;DESCRIPTION" "TARGETS;UNITS;EXAMPLES" ${ARGN})
  set(package strata-${role})
  install(TARGETS ${ARG_TARGETS} RUNTIME DESTINATION bin COMPONENT ${role})
  set(units "")
  foreach(unit ${ARG_UNITS})
    install(FILES ${STRATA_PACKAGING}/systemd/${unit}.service
            DESTINATION lib/systemd/system COMPONENT ${role})
    string(APPEND units " ${unit}.service")
  endforeach()
  string(STRIP "${units}" units)
  install(FILES ${STRATA_PACKAGING}/sysusers/${package}.conf DESTINATION lib/sysusers.d
          COMPONENT ${role})
  install(FILES ${STRATA_PACKAGING}/tmpfiles/${package}.conf DESTINATION lib/tmpfiles.d
          COMPONENT ${role})
  foreach(example ${ARG_EXAMPLES})
    install(FILES ${PROJECT_SOURCE_DIR}/deploy/examples/${example}
            DESTINATION share/doc/${package}/examples COMPONENT ${role})
  endforeach()
  install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION share/doc/${package}
          COMPONENT ${role})

  # Maintainer scripts: @PACKAGE@ and @UNITS@ filled in.
  set(PACKAGE ${package})
  set(UNITS "${units}")
  set(scripts "")
  foreach(script postinst prerm postrm)
    set(out ${PROJECT_BINARY_DIR}/packaging/${package}/${script})
    configure_file(${STRATA_PACKAGING}/${script}.in ${out} @ONLY
                   FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ
                                    GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
    list(APPEND scripts ${out})
  endforeach()
  string(TOUPPER ${role} ROLE)
  set(CPACK_DEBIAN_${ROLE}_PACKAGE_NAME ${package} PARENT_SCOPE)
  set(CPACK_DEBIAN_${ROLE}_PACKAGE_CONTROL_EXTRA "${scripts}" PARENT_SCOPE)
  set(CPACK_DEBIAN_${ROLE}_PACKAGE_DEPENDS "${ARG_DEPENDS}" PARENT_SCOPE)
  set(CPACK_DEBIAN_${ROLE}_PACKAGE_RECOMMENDS "${ARG_RECOMMENDS}" PARENT_SCOPE)
  set(CPACK_COMPONENT_${ROLE}_DESCRIPTION "${ARG_DESCRIPTION}" PARENT_SCOPE)
endfunction()

# systemd: the maintainer scripts run systemd-sysusers and systemd-tmpfiles.
strata_package(site
  TARGETS strata-cas strata-primary strata-secondary
  UNITS strata-cas strata-primary strata-secondary
  EXAMPLES cas.conf p01.conf s01.conf
  DEPENDS "systemd"
  RECOMMENDS "postgresql-15"
  DESCRIPTION "Strata site servers (CAS, primary, secondary)\n The site server of a Strata hierarchy: replication with its parent and children\n over mutual-TLS gRPC, its PostgreSQL database, clients, collections, content.")
strata_package(mp
  TARGETS strata-mp
  UNITS strata-mp
  EXAMPLES mp.conf
  DEPENDS "systemd"
  DESCRIPTION "Strata management point\n The contact of agents: registration, service location, policy, intake of\n inventory and state, the nudge channel.")
strata_package(dp
  TARGETS strata-dp
  UNITS strata-dp
  EXAMPLES dp.conf
  DEPENDS "systemd, nginx"
  DESCRIPTION "Strata distribution point\n A content library served to clients by nginx over HTTPS with client\n certificates, filled from its site server or a source DP.")
strata_package(provider
  TARGETS strata-provider stratactl strata-pki
  UNITS strata-provider
  EXAMPLES provider.conf stratactl.conf
  DEPENDS "systemd"
  DESCRIPTION "Strata provider, stratactl and strata-pki\n The admin API of a CAS or primary site (role-based, audited), the\n administrators' command-line tool, and the hierarchy's certificate authority.")
strata_package(agent
  TARGETS strata-agent
  UNITS strata-agent
  EXAMPLES agent.conf
  DEPENDS "systemd"
  DESCRIPTION "Strata agent\n The client on each managed machine: inventory, policy, deployments,\n scripts, live queries and runbook jobs.")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME strata)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "Strata developers <strata@example.invalid>")
set(CPACK_PACKAGE_VENDOR "Strata")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL site mp dp provider agent)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://example.invalid/strata")
# Shared-library dependencies from dpkg-shlibdeps (Debian's gRPC, protobuf,
# libpqxx, Abseil, OpenSSL, libcurl, libevent... at the versions built with).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
include(CPack)
