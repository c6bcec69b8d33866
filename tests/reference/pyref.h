// The python of the reference venv that scripts/setup.sh makes (Hugging Face's safetensors and tokenizers beside
// Debian's torch): $MEMTRAIN_PYREF/bin/python, by default ~/.cache/memtrain/pyref.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace memtrain::testing {

inline std::string reference_python() {
  const char* env = std::getenv("MEMTRAIN_PYREF");
  const char* home = std::getenv("HOME");
  const std::string dir = env != nullptr ? env : std::string(home != nullptr ? home : "") + "/.cache/memtrain/pyref";
  return dir + "/bin/python";
}

// Whether that python exists and imports `modules` ("safetensors, torch").
inline bool reference_python_has(const std::string& modules) {
  return std::filesystem::exists(reference_python()) &&
         std::system((reference_python() + " -c 'import " + modules + "' 2>/dev/null").c_str()) == 0;
}

// Runs tests/reference/<script> (e.g. "hf_model.py") with that python and the given shell words; its exit status.
inline int run_reference_script(const std::string& script, const std::string& args) {
  const std::string path = std::string(MEMTRAIN_SOURCE_DIR) + "/tests/reference/" + script;
  return std::system((reference_python() + " " + path + " " + args).c_str());
}

}  // namespace memtrain::testing
