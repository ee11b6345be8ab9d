/* What every public header of nn wraps its declarations in: C linkage for
 * C++ callers, and default visibility, so that the shared library (built
 * with -fvisibility=hidden) exports the public API and nothing else. */
#ifndef NN_API_H
#define NN_API_H

#ifdef __cplusplus
#define NN_BEGIN_DECLS extern "C" { _Pragma("GCC visibility push(default)")
#define NN_END_DECLS _Pragma("GCC visibility pop") }
#else
#define NN_BEGIN_DECLS _Pragma("GCC visibility push(default)")
#define NN_END_DECLS _Pragma("GCC visibility pop")
#endif

#endif
