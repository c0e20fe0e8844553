# cpack -G DEB (from the build directory): the package "mst", installing under
# /usr (library, headers, tools, man pages, CMake package, .pc file, Python
# binding under /usr/lib/python3/dist-packages). Its Depends come from
# dpkg-shlibdeps over the packaged binaries (libopenmpi3 or libmpich12,
# libcjson1, libc6) when dpkg-shlibdeps is installed (package dpkg-dev), else
# from the list below.
set(CPACK_PACKAGE_NAME mst)
set(CPACK_PACKAGE_VENDOR "the mst authors")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_DESCRIPTION
    "mst writes one shared safetensors file from all ranks of an MPI job with MPI-IO, \
atomically (a temporary file renamed at the end), and reads and checks such files. \
The package holds libmst (built for ${MST_MPI_DESCRIPTION}), its headers, CMake \
package and pkg-config file, the tools mst-inspect, mst-merge, mst-clean and \
mst-bench with their manual pages, and the Python binding (ctypes, needs mpi4py).")
set(CPACK_RESOURCE_FILE_LICENSE ${PROJECT_SOURCE_DIR}/LICENSE)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_GENERATOR DEB)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "the mst authors <mst@localhost>" CACHE STRING
    "Maintainer field of the .deb")
set(CPACK_DEBIAN_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
find_program(MST_DPKG_SHLIBDEPS dpkg-shlibdeps)
mark_as_advanced(MST_DPKG_SHLIBDEPS)
if(MST_DPKG_SHLIBDEPS)
    set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
elseif(MST_MPI_FLAVOUR STREQUAL "mpich")
    set(CPACK_DEBIAN_PACKAGE_DEPENDS "libmpich12, libcjson1, libc6")
else()
    set(CPACK_DEBIAN_PACKAGE_DEPENDS "libopenmpi3, libcjson1, libc6")
endif()
if(NOT MST_DPKG_SHLIBDEPS AND MST_CRC_IMPL STREQUAL "isa-l")  # CRC-32 of checksums
    string(APPEND CPACK_DEBIAN_PACKAGE_DEPENDS ", libisal2")
elseif(NOT MST_DPKG_SHLIBDEPS)
    string(APPEND CPACK_DEBIAN_PACKAGE_DEPENDS ", zlib1g")
endif()
# The headers and CMake package need the MPI development files of the same MPI.
if(MST_MPI_FLAVOUR STREQUAL "mpich")
    set(CPACK_DEBIAN_PACKAGE_SUGGESTS "libmpich-dev, libcjson-dev, python3-mpi4py")
else()
    set(CPACK_DEBIAN_PACKAGE_SUGGESTS "libopenmpi-dev, libcjson-dev, python3-mpi4py")
endif()
include(CPack)
