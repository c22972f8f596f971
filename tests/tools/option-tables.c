/* tests/tools/option-tables.c — lists the paf.conf options the code declares, for paf.conf(5).
 *
 * Usage: option-tables [PLUGIN.so…]. One line per option, tab-separated:
 * SECTION KEY TYPE MIN MAX CHOICES DEFAULT ("-" for no range, no choices,
 * no default; choices comma-separated). The
 * core's sections come from libpaf's own tables (linked in from its
 * objects: they are not exported); a plugin's from its descriptor, read as
 * the loader reads it, without running its init.
 */
#include <dlfcn.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/paf-internal.h"

static const char *type_name(paf_type t) {
        switch (t) {
        case PAF_TYPE_STRING:
                return "string";
        case PAF_TYPE_INT:
                return "integer";
        case PAF_TYPE_BOOL:
                return "boolean";
        default:
                return "?";
        }
}

static void print_option(const char *section, const paf_option_spec *o, void *userdata) {
        (void)userdata;
        /* "listen." is the family of [listen.NAME]. */
        size_t len = strlen(section);
        printf("%s%s\t%s\t%s\t", section, len > 0 && section[len - 1] == '.' ? "NAME" : "", o->name,
               type_name(o->type));
        if (o->flags & PAF_OPTION_RANGE)
                printf("%" PRId64 "\t%" PRId64, o->min, o->max);
        else
                printf("-\t-");
        putchar('\t');
        for (const char *const *c = o->choices; c && *c; c++)
                printf("%s%s", c == o->choices ? "" : ",", *c);
        if (!o->choices || !*o->choices)
                putchar('-');
        printf("\t%s\n", o->default_value ? o->default_value : "-");
}

static int print_plugin(const char *path) {
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
                fprintf(stderr, "option-tables: %s: %s\n", path, dlerror());
                return -1;
        }
        const paf_plugin_descriptor *d = dlsym(h, PAF_PLUGIN_SYMBOL);
        if (!d) {
                fprintf(stderr, "option-tables: %s: no %s\n", path, PAF_PLUGIN_SYMBOL);
                dlclose(h);
                return -1;
        }
        bool has_specs = d->struct_size >= offsetof(paf_plugin_descriptor, option_spec_size) +
                                                   sizeof(d->option_spec_size) &&
                         d->option_specs && d->option_spec_size > 0;
        if (has_specs) {
                /* At the plugin's stride: members it was not built with read as zero. */
                size_t size = d->option_spec_size < sizeof(paf_option_spec)
                                      ? d->option_spec_size
                                      : sizeof(paf_option_spec);
                for (const char *p = (const char *)d->option_specs;; p += d->option_spec_size) {
                        paf_option_spec o = {};
                        memcpy(&o, p, size);
                        if (!o.name)
                                break;
                        print_option(d->name, &o, NULL);
                }
        } else
                for (const paf_option *p = d->options; p && p->name; p++)
                        print_option(d->name,
                                     &(paf_option_spec){.name = p->name,
                                                        .type = p->type,
                                                        .default_value = p->default_value},
                                     NULL);
        dlclose(h);
        return 0;
}

int main(int argc, char **argv) {
        int status = 0;
        paf_config_foreach_core_option(print_option, NULL);
        for (int i = 1; i < argc; i++)
                if (print_plugin(argv[i]) < 0)
                        status = 1;
        return status;
}
