# memtrain_library(folder deps...): memtrain_<folder> from the folder's *.cc files (an INTERFACE target while it
# has none yet), so every folder builds the same way.
function(memtrain_library folder)
  file(GLOB sources CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/${folder}/*.cc)
  if(sources)
    add_library(memtrain_${folder} STATIC ${sources})
    target_link_libraries(memtrain_${folder} PUBLIC ${ARGN})
  else()
    add_library(memtrain_${folder} INTERFACE)
    target_link_libraries(memtrain_${folder} INTERFACE ${ARGN})
  endif()
endfunction()
