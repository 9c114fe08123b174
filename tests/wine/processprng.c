/* ProcessPrng for Wine 8.0, which has no bcryptprimitives.dll.
 *
 * Rust >= 1.78 programs for Windows take their random bytes from
 * bcryptprimitives!ProcessPrng, which Windows 10 and later export. Debian's Wine 8.0 lacks that
 * DLL, so the agent cannot start under it. This shim, built with mingw-w64 and placed beside the
 * exe (or in the prefix's system32), forwards to BCryptGenRandom. Test use only: real Windows
 * has the real DLL. */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x7fffffffUL ? 0x7fffffffUL : (ULONG)len;
        if (BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
