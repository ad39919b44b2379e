# One CTest test per doctest case, so that `ctest -R rollback` or `ctest -L pipeline`
# picks cases by name or by suite. Like doctest's own doctest_discover_tests, but
# case names may hold ';', '[' and ']' (doctest.cmake 2.4 splits them), a filter
# that matches no case fails instead of passing, and the suite is a label.
#
# agentd_discover_doctest(TARGET PREFIX prefix [PROPERTIES name value ...])
#   After each build of TARGET its cases are listed (through the target's
#   CROSSCOMPILING_EMULATOR when cross-compiling) and written as tests named
#   "<prefix><case>", labelled with the prefix's word and the case's suite.
#
# The same file is the script the build runs (cmake -P) to write that list.

if(NOT CMAKE_SCRIPT_MODE_FILE)
  set(_agentd_discover_script "${CMAKE_CURRENT_LIST_FILE}")

  function(agentd_discover_doctest target)
    cmake_parse_arguments(PARSE_ARGV 1 arg "" "PREFIX" "PROPERTIES")
    get_property(emulator TARGET ${target} PROPERTY CROSSCOMPILING_EMULATOR)
    set(dir "${CMAKE_CURRENT_BINARY_DIR}")
    set(args_file "${dir}/${target}_discover_args.cmake")
    set(tests_file "${dir}/${target}_tests.cmake")
    string(REGEX MATCH "^[A-Za-z0-9_-]+" label "${arg_PREFIX}")
    # Lists travel in a file: on a command line their ';' would reach the shell.
    file(GENERATE OUTPUT "${args_file}" CONTENT
"set(executable [==[$<TARGET_FILE:${target}>]==])
set(emulator [==[${emulator}]==])
set(prefix [==[${arg_PREFIX}]==])
set(label [==[${label}]==])
set(properties [==[${arg_PROPERTIES}]==])
set(working_dir [==[${dir}]==])
set(tests_file [==[${tests_file}]==])
")
    add_custom_command(
      TARGET ${target} POST_BUILD
      BYPRODUCTS "${tests_file}"
      COMMAND "${CMAKE_COMMAND}" -D "ARGS_FILE=${args_file}" -P "${_agentd_discover_script}"
      VERBATIM)
    set(include_file "${dir}/${target}_include.cmake")
    file(WRITE "${include_file}"
"if(EXISTS [==[${tests_file}]==])
  include([==[${tests_file}]==])
else()
  add_test([==[${target}_NOT_BUILT]==] [==[${target}_NOT_BUILT]==])
endif()
")
    set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${include_file}")
  endfunction()
  return()
endif()

# Script mode: list the cases and write the tests.
include("${ARGS_FILE}")
execute_process(
  COMMAND ${emulator} "${executable}" --list-test-cases --reporters=xml
  OUTPUT_VARIABLE xml
  RESULT_VARIABLE result
  WORKING_DIRECTORY "${working_dir}")
if(NOT result EQUAL 0)
  message(FATAL_ERROR "${executable} --list-test-cases failed (${result}):\n${xml}")
endif()

# Names may hold list separators: keep them out of CMake's lists until written.
string(REPLACE ";" "@SEMICOLON@" xml "${xml}")
string(REPLACE "[" "@LBRACKET@" xml "${xml}")
string(REPLACE "]" "@RBRACKET@" xml "${xml}")
string(REGEX MATCHALL "<TestCase name=\"[^\"]*\" testsuite=\"[^\"]*\"" cases "${xml}")

set(script "")
set(count 0)
foreach(c IN LISTS cases)
  string(REGEX REPLACE "^<TestCase name=\"([^\"]*)\" testsuite=\"([^\"]*)\"$" "\\1" name "${c}")
  string(REGEX REPLACE "^<TestCase name=\"([^\"]*)\" testsuite=\"([^\"]*)\"$" "\\2" suite "${c}")
  foreach(var name suite)
    set(v "${${var}}")
    string(REPLACE "@SEMICOLON@" ";" v "${v}")
    string(REPLACE "@LBRACKET@" "[" v "${v}")
    string(REPLACE "@RBRACKET@" "]" v "${v}")
    string(REPLACE "&quot;" "\"" v "${v}")
    string(REPLACE "&apos;" "'" v "${v}")
    string(REPLACE "&lt;" "<" v "${v}")
    string(REPLACE "&gt;" ">" v "${v}")
    string(REPLACE "&amp;" "&" v "${v}")
    set(${var} "${v}")
  endforeach()
  # doctest's --test-case takes a comma-separated list of patterns.
  string(REPLACE "," "\\," filter "${name}")
  set(emulator_args "")
  foreach(a IN LISTS emulator)
    string(APPEND emulator_args " [==[${a}]==]")
  endforeach()
  string(APPEND script
    "add_test([==[${prefix}${name}]==]${emulator_args} [==[${executable}]==] [==[--test-case=${filter}]==])\n"
    "set_tests_properties([==[${prefix}${name}]==] PROPERTIES WORKING_DIRECTORY [==[${working_dir}]==]"
    " LABELS [==[${label};${suite}]==]"
    " FAIL_REGULAR_EXPRESSION [==[test cases: +0 +[|]]==] ${properties})\n")
  math(EXPR count "${count} + 1")
endforeach()
if(count EQUAL 0)
  message(FATAL_ERROR "${executable} lists no test cases")
endif()
file(WRITE "${tests_file}" "${script}")
