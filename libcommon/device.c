/* device.c - the --device option (see device.h). */
#include <string.h>

#include "cli.h"
#include "device.h"

ssm_device ssm_parse_device(const char *arg) {
    if (!strcmp(arg, "cpu")) return SSM_DEVICE_CPU;
    if (strcmp(arg, "cuda")) ssm_usage_error("--device: expected cpu or cuda, got '%s'", arg);
#ifndef SSM_HAVE_CUDA
    ssm_usage_error("--device cuda: this build has no CUDA support (rebuild with nvcc installed)");
#endif
    return SSM_DEVICE_CUDA;
}
