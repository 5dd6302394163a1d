# SPDX-License-Identifier: Apache-2.0
# agentcage_bpf_skeleton(NAME <name> SOURCES <a.bpf.c>... [INCLUDES <dir>...])
#
# Compiles each *.bpf.c with clang for the BPF target, links the objects into one BPF
# object with `bpftool gen object` (maps are declared once, __weak, in a shared header),
# and generates one skeleton header with `bpftool gen skeleton`. Yields an INTERFACE
# target <name>_skel that carries the skeleton's include directory and links libbpf.
#
# vmlinux.h is generated at build time from the running kernel's BTF
# (/sys/kernel/btf/vmlinux). Fallback for machines without BTF (cross builds, CI
# containers): pass -DAGENTCAGE_VMLINUX_H=/path/to/vmlinux.h, generated on a machine that
# has it with `bpftool btf dump file /sys/kernel/btf/vmlinux format c`. CO-RE relocations
# make the resulting object portable across kernels either way.

find_program(BPF_CLANG NAMES clang clang-14 REQUIRED)
find_program(BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)
set(AGENTCAGE_VMLINUX_H "" CACHE FILEPATH "Pre-generated vmlinux.h (used when the build host has no BTF)")

if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|amd64")
  set(AGENTCAGE_BPF_ARCH x86)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
  set(AGENTCAGE_BPF_ARCH arm64)
else()
  message(FATAL_ERROR "agentcage: unsupported BPF target architecture ${CMAKE_SYSTEM_PROCESSOR}")
endif()

set(AGENTCAGE_VMLINUX_DIR ${CMAKE_BINARY_DIR}/vmlinux)
if(AGENTCAGE_VMLINUX_H)
  add_custom_command(OUTPUT ${AGENTCAGE_VMLINUX_DIR}/vmlinux.h
    COMMAND ${CMAKE_COMMAND} -E make_directory ${AGENTCAGE_VMLINUX_DIR}
    COMMAND ${CMAKE_COMMAND} -E copy ${AGENTCAGE_VMLINUX_H} ${AGENTCAGE_VMLINUX_DIR}/vmlinux.h
    DEPENDS ${AGENTCAGE_VMLINUX_H}
    COMMENT "vmlinux.h from ${AGENTCAGE_VMLINUX_H}")
elseif(EXISTS /sys/kernel/btf/vmlinux)
  add_custom_command(OUTPUT ${AGENTCAGE_VMLINUX_DIR}/vmlinux.h
    COMMAND ${CMAKE_COMMAND} -E make_directory ${AGENTCAGE_VMLINUX_DIR}
    COMMAND ${BPFTOOL} btf dump file /sys/kernel/btf/vmlinux format c > ${AGENTCAGE_VMLINUX_DIR}/vmlinux.h
    COMMENT "vmlinux.h from /sys/kernel/btf/vmlinux")
else()
  message(FATAL_ERROR "agentcage: this kernel exposes no /sys/kernel/btf/vmlinux.\n"
    "hint: build with -DAGENTCAGE_VMLINUX_H=<file>, generated on a BTF-enabled kernel with\n"
    "      bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux.h")
endif()
add_custom_target(agentcage_vmlinux DEPENDS ${AGENTCAGE_VMLINUX_DIR}/vmlinux.h)

function(agentcage_bpf_skeleton)
  cmake_parse_arguments(ARG "" "NAME" "SOURCES;INCLUDES;DEPENDS" ${ARGN})
  set(outdir ${CMAKE_CURRENT_BINARY_DIR}/${ARG_NAME})
  set(objs)
  set(incflags -I${AGENTCAGE_VMLINUX_DIR})
  foreach(inc ${ARG_INCLUDES})
    list(APPEND incflags -I${inc})
  endforeach()
  foreach(src ${ARG_SOURCES})
    get_filename_component(base ${src} NAME_WE)
    set(obj ${outdir}/${base}.bpf.o)
    add_custom_command(OUTPUT ${obj}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${outdir}
      COMMAND ${BPF_CLANG} -target bpf -g -O2 -Wall -Werror -D__TARGET_ARCH_${AGENTCAGE_BPF_ARCH}
              ${incflags} -c ${CMAKE_CURRENT_SOURCE_DIR}/${src} -o ${obj}
      DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${src} ${ARG_DEPENDS} agentcage_vmlinux
              ${AGENTCAGE_VMLINUX_DIR}/vmlinux.h
      IMPLICIT_DEPENDS C ${CMAKE_CURRENT_SOURCE_DIR}/${src}
      COMMENT "BPF ${src}")
    list(APPEND objs ${obj})
  endforeach()
  set(linked ${outdir}/${ARG_NAME}.bpf.o)
  set(skel ${outdir}/${ARG_NAME}.skel.h)
  add_custom_command(OUTPUT ${linked}
    COMMAND ${BPFTOOL} gen object ${linked} ${objs}
    DEPENDS ${objs}
    COMMENT "BPF link ${ARG_NAME}.bpf.o")
  add_custom_command(OUTPUT ${skel}
    COMMAND ${BPFTOOL} gen skeleton ${linked} name ${ARG_NAME} > ${skel}
    DEPENDS ${linked}
    COMMENT "BPF skeleton ${ARG_NAME}.skel.h")
  add_custom_target(${ARG_NAME}_skel_gen DEPENDS ${skel})
  add_library(${ARG_NAME}_skel INTERFACE)
  add_dependencies(${ARG_NAME}_skel ${ARG_NAME}_skel_gen)
  target_include_directories(${ARG_NAME}_skel INTERFACE ${outdir})
  target_link_libraries(${ARG_NAME}_skel INTERFACE PkgConfig::LIBBPF)
endfunction()
