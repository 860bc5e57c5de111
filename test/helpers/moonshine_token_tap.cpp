// Test-only LD_PRELOAD shim for the Moonshine reference (test/helpers/
// moonshine_reference.py): records the token ids the wheels' own runtimes
// decode. Both libmoonshine.so builds turn a line's greedy token ids into
// text through one exported (weak) function; this shim defines the same
// symbols, appends the ids to the file named by $MOONSHINE_TOKEN_TAP, and
// calls the library's own function. Nothing else is touched.
//   moonshine-voice 0.1.0: BinTokenizer::tokens_to_text<long>(vector<long> const&, bool)
//   moonshine-cpp   0.1.4: Tokenizer::decode(vector<long> const&)
#include <dlfcn.h>
#include <link.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#define VOICE_SYM "_ZN12BinTokenizer14tokens_to_textIlEENSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEERKSt6vectorIT_SaIS8_EEb"
#define CPP_SYM "_ZN9Tokenizer6decodeB5cxx11ERKSt6vectorIlSaIlEE"

namespace {

// The library's own definition (libmoonshine is loaded RTLD_LOCAL by ctypes,
// so RTLD_NEXT cannot see it: find it by path).
void* real(const char* sym) {
  static std::string path;
  dl_iterate_phdr(
      [](dl_phdr_info* i, size_t, void*) -> int {
        if (i->dlpi_name && std::strstr(i->dlpi_name, "libmoonshine")) {
          path = i->dlpi_name;
          return 1;
        }
        return 0;
      },
      nullptr);
  void* h = path.empty() ? nullptr : dlopen(path.c_str(), RTLD_NOLOAD | RTLD_LAZY);
  void* f = h ? dlsym(h, sym) : nullptr;
  if (!f) {
    std::fprintf(stderr, "moonshine_token_tap: %s not found in libmoonshine\n", sym);
    std::abort();
  }
  return f;
}

void record(const std::vector<long>& t) {
  const char* file = std::getenv("MOONSHINE_TOKEN_TAP");
  if (!file) return;
  FILE* f = std::fopen(file, "a");
  if (!f) return;
  for (size_t i = 0; i < t.size(); i++) std::fprintf(f, i ? " %ld" : "%ld", t[i]);
  std::fprintf(f, "\n");
  std::fclose(f);
}

}  // namespace

std::string tapVoice(void* self, const std::vector<long>& t, bool skip) asm(VOICE_SYM);
std::string tapVoice(void* self, const std::vector<long>& t, bool skip) {
  using Fn = std::string (*)(void*, const std::vector<long>&, bool);
  static Fn fn = reinterpret_cast<Fn>(real(VOICE_SYM));
  record(t);
  return fn(self, t, skip);
}

std::string tapCpp(void* self, const std::vector<long>& t) asm(CPP_SYM);
std::string tapCpp(void* self, const std::vector<long>& t) {
  using Fn = std::string (*)(void*, const std::vector<long>&);
  static Fn fn = reinterpret_cast<Fn>(real(CPP_SYM));
  record(t);
  return fn(self, t);
}
