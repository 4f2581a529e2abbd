/* getenv_spy.so: an LD_PRELOAD library for the tests that records every
 * getenv()/secure_getenv() call made from code inside pam_diycloud.so (the
 * caller's address is looked up with dladdr), one name per line, in the
 * file named by GETENV_SPY_LOG. The module must read no environment
 * variable: under su the environment is the caller's. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

static char *(*next_getenv)(const char *);
static char *(*next_secure_getenv)(const char *);

static void record(const char *name, void *caller)
{
    Dl_info info;
    if (!next_getenv)
        next_getenv = (char *(*)(const char *))dlsym(RTLD_NEXT, "getenv");
    if (!dladdr(caller, &info) || !info.dli_fname || !strstr(info.dli_fname, "pam_diycloud"))
        return;
    const char *log = next_getenv ? next_getenv("GETENV_SPY_LOG") : NULL;
    if (!log)
        return;
    FILE *f = fopen(log, "a");
    if (f) {
        fprintf(f, "%s\n", name);
        fclose(f);
    }
}

char *getenv(const char *name)
{
    record(name, __builtin_return_address(0));
    return next_getenv ? next_getenv(name) : NULL;
}

char *secure_getenv(const char *name)
{
    if (!next_secure_getenv)
        next_secure_getenv = (char *(*)(const char *))dlsym(RTLD_NEXT, "secure_getenv");
    record(name, __builtin_return_address(0));
    return next_secure_getenv ? next_secure_getenv(name) : NULL;
}
