# agentd --help is agentd(8) itself: this script formats packaging/agentd.8 with
# groff as `man` would (plain ASCII, 78 columns, left-adjusted, no hyphenation),
# drops the page header and footer, and writes it as a C++ raw string literal
# that agentd/config.cpp includes. One text, so the two never disagree.
#   cmake -DGROFF=/usr/bin/groff -DIN=agentd.8 -DOUT=help_text.inc -P help-from-man.cmake
file(READ "${IN}" page)
# Left-adjusted and unhyphenated, as a terminal reader expects of --help.
string(REGEX REPLACE "(\n\\.TH[^\n]*\n)" "\\1.ad l\n.nh\n" page "${page}")
get_filename_component(out_dir "${OUT}" DIRECTORY)
file(MAKE_DIRECTORY "${out_dir}")
file(WRITE "${OUT}.man" "${page}")
execute_process(
  COMMAND "${GROFF}" -man -Tascii -P-cbou -rcR=1 -rLL=78n "${OUT}.man"
  OUTPUT_VARIABLE text
  ERROR_VARIABLE errors
  RESULT_VARIABLE rc)
file(REMOVE "${OUT}.man")
if(NOT rc EQUAL 0 OR NOT errors STREQUAL "")
  message(FATAL_ERROR "groff could not format ${IN} (exit ${rc}): ${errors}")
endif()
# The page header ("AGENTD(8)  System Administration  AGENTD(8)") and footer.
string(REGEX REPLACE "^AGENTD\\(8\\)[^\n]*\n+" "" text "${text}")
string(REGEX REPLACE "\n+agentd +[0-9-]+ +AGENTD\\(8\\)\n*$" "\n" text "${text}")
if(text MATCHES "\\)AGENTD_HELP\"")
  message(FATAL_ERROR "${IN} contains the raw string's delimiter")
endif()
file(WRITE "${OUT}.tmp" "R\"AGENTD_HELP(${text})AGENTD_HELP\"\n")
# Rewritten only when it changed, so an unchanged page rebuilds nothing.
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
