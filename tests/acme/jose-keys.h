/* tests/acme/jose-keys.h — fixed keys for test-jose.c, generated with GnuTLS once. */
#pragma once

/* P-256 whose public x starts with a zero byte (found by generating keys until one did) */
static const char key_p256_x0[] =
        "-----BEGIN PRIVATE KEY-----\n"
        "MIGTAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBHkwdwIBAQQgGpNrecXhNIxxvDwV\n"
        "gLUoDrFEigafJoPqE75d0PW6Mc6gCgYIKoZIzj0DAQehRANCAAQA7f5Cm8RCPAQk\n"
        "b3/AQ/FaaTj0+tEgmB6wx3/Gvwb/LdkBI0g3eOjLS8ETFNB0VUJHAyhroXv8xsqT\n"
        "ZBUk5pVw\n"
        "-----END PRIVATE KEY-----\n";

/* P-256 whose public y starts with a zero byte (likewise) */
static const char key_p256_y0[] =
        "-----BEGIN PRIVATE KEY-----\n"
        "MIGTAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBHkwdwIBAQQgSLpIPwVS5ecD+5lk\n"
        "OydTk8en1EArtERa0QOeQt8RwragCgYIKoZIzj0DAQehRANCAARGfiFVCPEymkvH\n"
        "VaTdyTifrwaJyndpP8QjwNn/UVvFuwCRY5t9QLDekyCwHRccdb7HCzeCZycrCz9N\n"
        "hHtRGIWB\n"
        "-----END PRIVATE KEY-----\n";

/* RSA 2048, PKCS#8 */
static const char key_rsa2048[] =
        "-----BEGIN PRIVATE KEY-----\n"
        "MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQDAO+/Oo8lPVtbC\n"
        "wYYBx0BdBhUHtt84b2xPISOKlVqLrK7qwtULHzul5K8Vyq62bzNrxywBRArKyfe/\n"
        "ogbPVkNjA6fX8OmJSnljJ5WfvQl3yTNl/jHDa6Si9oeI2d8MO5kvhQ9y0vYz3T0P\n"
        "PH41pVpuKQppuJNckfkOLMyVg2GdA51f3fZbifVvBUzPAnMg4QmPr2jHFogHy1ky\n"
        "0bGh53N1V7udVQ1d0dZn1y+tbz8mCGDEBRHDwWCDnCf6zdz4u7TTZH9SvVE0Msuu\n"
        "npSYokNeeM4jhvr56+DCCoLOTYrGUcmxLfIuIoVI0XVLFYu4mjER/E5VxwwluK3X\n"
        "VV5xPaoxAgMBAAECggEAfO83RqQ59H9qqj6d+k/l689FIbNfVc1MpgzSjYHNzBMZ\n"
        "x2eCkGznFkUO6WnFrLmOwNA8MEJphSxIANqr9FqLBzHcBsMC9IBbbe7PFncETT6N\n"
        "Ug8nhmtSH7t7kJyQkuG1CCZBSQ4EhuaVhW56VCE4KXow007rLvGL3QOOnuk5KpKJ\n"
        "p+XBh6AuzVVGgWSc5Ro5ekXO2qwvkkILqJW2bev387+wYwvQvMNhmOIOQ6M7G7Qk\n"
        "1UMpkpP9kdyyl98nqvIveq5z2qcELNvfa3LY+27iB0JicxzzIS8q4/KcgdT8DQeA\n"
        "zwTfK7GqPkHkQHYihP54H43XqngYg+RACrRqLOBncQKBgQD4U+Lt6xN8+9dTkVKX\n"
        "iSRH7Tdvbal1PaHRaxGKrUL9wmu7tUl31p/yK5WnCv64e3pI5Z4z9lEx5i6TmY5f\n"
        "S3dFjGiZx8pm52qSAyFGmzIeFdn6CaNyNL9UA4zDq5AqFv07kNplYLHFST/mBYaJ\n"
        "cTJfDX8Srsw/VcR848r6BAk0rQKBgQDGLGLV63eFDny9lX3o6dafHrzMT4hiEeX8\n"
        "fGoPN4Lwzh75C06SMFmo+LIHcXzx6/uFXQXAcYAGSUTmDS0mZ9F70NONQXX15Qrw\n"
        "VE6t99ArsJwHiPI3VbW0xcRJpe/0qQi6rx9x5YsEBjQHc/4TJK163e7NxMfTfWu4\n"
        "UTvOrSC4FQKBgG+Z25mLFSYNVHclD1Y09w4wKMK2KPscqLWiBa8qMLo0fxBL5+mo\n"
        "lhdSyR3aTiGAtLNAJno5z8G6LeJ9l0NyefbSpEvAQ1E93WIjb/f4VWy56014uXDh\n"
        "Db9nHQLu/oo77LCxZ8U50IrWYZYxk4X/TmDzgtFVp0src3OhOB5mY/C9AoGAdvRv\n"
        "w27bSIBAumBAuw2aads+gvl+qTeLMPrRgx7UN43So7V4zWG+gCIAY11pHaKEUTJc\n"
        "YH8A1UUn2VuxbWtGIKdiRVk04IxC+63vqJenWoJhtlgq5LJLJx7LS1YS6m6Isd6q\n"
        "5mheAOVkV9D1gzIx/B252cQ0Gqwfe/0vBEmB6V0CgYAjslbYdSwb/3L4OBdD9+7P\n"
        "n2P9wm+qgL9RiKhAVNwlakGBCFjCkQGBfRRKprOM29jJpU/j32W2R2G3PEYhz3VG\n"
        "aEumQc3eRJO633c/QwjFLQ5lmL5cnZtWRUPfgKU/i6vHQqXa6df9VbNB8zN1PGhj\n"
        "TiL5s75CHTqlNz5VPRFHnQ==\n"
        "-----END PRIVATE KEY-----\n";

/* RSA 1024: too small for ACME */
static const char key_rsa1024[] =
        "-----BEGIN RSA PRIVATE KEY-----\n"
        "MIICXgIBAAKBgQDfsB1AaTJdgQGSV4cTRIF2rwvv2Fu7y+F4hZiYgXZQEBDLbS4x\n"
        "89viJieUtgwdJCIIekJbw+tPnYtMagktT4B+X3U2RWR9MA1G/Nda2rzMmbbITBHj\n"
        "vkIgEQwXwYa7mLeMos94aTmzwt6De8asXdXd24sHJlK0+dDuyQwN0nXawQIDAQAB\n"
        "AoGAFCo4ONpC5BMBJUQmtSHz2dMl7FVAz8ktZkQE4ZqqI8WO/ge1pmMpa1WtM8bF\n"
        "iMr9Fm6PFN6wk9jL+fOFKESGfLLJEPi41di56RtigO2pYzYXMAOS+ydSSY56Xk0j\n"
        "k2vEBtnZ2WHeqcGq56yVlEBauxDpVxdNLhOLfvjlRGDnocECQQDmUzyGjHMt85cU\n"
        "8Xku8VdXv0RLQ5ri9QTko81o+ye7/NvZ2A2vJ8u6KGI9JVGCsrUmu5iDUEayvOSf\n"
        "h/WQ8XK9AkEA+J95D7VDT5Y6VfnM3XBAapgYmIITuDos/iIPb9zXqRpAkBX0iCaM\n"
        "VMWrwL4XLP2Sn3lKNfoNL0PEpGR+mLLqVQJBAKch11W7LQk3LXahEtKhhkPCIwiK\n"
        "ciYmrfpLco6vUVH0VoRpZuSm+AqJq1+7aL5yd0k375+57NNehnfM7MDUs/ECQQCO\n"
        "o+/w8y4LG0WczhSbdyt9/IUf+oEV0Uq/AwuYQjv46Pbhs7b35iXc/QvtKSJizZix\n"
        "pgTNswiddWP8bSu0r/GBAkEArt7F0T5KvcA8W0nZNNuecHTzjirfN6eIe3J/2ZKT\n"
        "eWzgy/b39IIzug+osspmfEImPaNiFVt38WmuB80UteTolw==\n"
        "-----END RSA PRIVATE KEY-----\n";

/* Ed25519: not an ACME key type */
static const char key_ed25519[] =
        "-----BEGIN PRIVATE KEY-----\n"
        "MC4CAQAwBQYDK2VwBCIEIMrGlvR9PZAQxXGOlypteHW09DJVgSr9DL1gPY4+RThD\n"
        "-----END PRIVATE KEY-----\n";

/* P-521: not among the curves paf takes */
static const char key_p521[] = "-----BEGIN EC PRIVATE KEY-----\n"
                               "MIHbAgEBBEEzux5BDcfHeXYIVq5uqOiENLEO38rKmrK1PiBYk52yxajNkIxUNIbL\n"
                               "pH5pdbRyvX/jOkjn9qwvcVYDRo/Ry0UXKKAHBgUrgQQAI6GBiQOBhgAEAP2voHf5\n"
                               "q8RGMUof5v+wWjuswoDmHvMDyCDagYG5ZWTjDtOpekGo8SxFloc1pB1awy0a9XAy\n"
                               "v7ht39DlkJuVhuEdAQe21s58/3Owr0eK1yQirePqUWHcQn2ik96ufUrg5xT5PMqS\n"
                               "3JVntaz5dRYrmab7pd12MLXipZb/5vrywt2PbL50\n"
                               "-----END EC PRIVATE KEY-----\n";
