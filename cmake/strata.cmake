# One helper to declare a library, one to declare a test (Redpanda's v_cc_library idea).
#
#   strata_cc_library(NAME base SRCS a.cc b.cc DEPS absl::status)
#     -> target strata_base, includes rooted at the repository top.
#   strata_cc_test(NAME base_test SRCS x_test.cc DEPS strata_base)
#     -> executable linked with the one compiled Catch2 main, registered with CTest.

function(strata_cc_library)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS" ${ARGN})
  add_library(strata_${ARG_NAME} STATIC ${ARG_SRCS})
  target_include_directories(strata_${ARG_NAME} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  target_compile_options(strata_${ARG_NAME} PRIVATE ${STRATA_WARNINGS})
  target_link_libraries(strata_${ARG_NAME} PUBLIC ${ARG_DEPS})
endfunction()

function(strata_cc_binary)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_compile_options(${ARG_NAME} PRIVATE ${STRATA_WARNINGS})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS})
endfunction()

function(strata_cc_test)
  cmake_parse_arguments(ARG "" "NAME;TIMEOUT" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_compile_options(${ARG_NAME} PRIVATE ${STRATA_WARNINGS})
  target_link_libraries(${ARG_NAME} PRIVATE strata_catch_main ${ARG_DEPS})
  add_test(NAME ${ARG_NAME} COMMAND ${ARG_NAME})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  set_tests_properties(${ARG_NAME} PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "${ARG_LABELS}")
endfunction()

# Embeds text files (SQL migrations) into a generated .cc as string constants.
#   strata_embed_files(OUT_VAR NAMESPACE ns SYMBOL kFiles FILES a.sql b.sql)
# defines `extern const strata::EmbeddedFile ns::kFiles[]; extern const int ns::kFilesCount;`
function(strata_embed_files OUT_VAR)
  cmake_parse_arguments(ARG "" "NAMESPACE;SYMBOL" "FILES" ${ARGN})
  set(out "${CMAKE_CURRENT_BINARY_DIR}/${ARG_SYMBOL}_embedded.cc")
  # A list cannot cross a command line as is: "," separates the files there.
  string(REPLACE ";" "," files_arg "${ARG_FILES}")
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DNAMESPACE=${ARG_NAMESPACE} -DSYMBOL=${ARG_SYMBOL}
            "-DFILES=${files_arg}" -P ${PROJECT_SOURCE_DIR}/cmake/embed_files.cmake
    DEPENDS ${ARG_FILES} ${PROJECT_SOURCE_DIR}/cmake/embed_files.cmake
    COMMENT "Embedding ${ARG_SYMBOL}")
  set(${OUT_VAR} ${out} PARENT_SCOPE)
endfunction()
