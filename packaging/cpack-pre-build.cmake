# Run by cpack (CPACK_PRE_BUILD_SCRIPTS) on the staged files before each package
# is made: drop the .comment section (the compiler's ident) that CPack's strip
# keeps from the executables, as Debian's dh_strip does.
if(NOT CPACK_AGENTD_STRIP)
  return()
endif()
file(GLOB _executables "${CPACK_TEMPORARY_INSTALL_DIRECTORY}/*/sbin/*")
foreach(_exe IN LISTS _executables)
  execute_process(COMMAND ${CPACK_AGENTD_STRIP} --remove-section=.comment ${_exe} RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "strip --remove-section=.comment ${_exe}: ${_rc}")
  endif()
endforeach()
