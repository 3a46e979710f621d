// Self-signed certificates for the TLS tests, made at test time with the openssl command (native
// builds only) in a directory of their own, removed at exit. One instance per kind per process.
#pragma once

#ifndef __EMSCRIPTEN__
#include <unistd.h>

#include <cstdlib>
#include <string>

struct TestCert {
  std::string dir, cert, key;
  explicit TestCert(const std::string& name = "tls",
                    const std::string& subject_and_extensions =
                        "-subj /CN=localhost -addext subjectAltName=DNS:localhost") {
    dir = "/tmp/eddy-" + name + "-" + std::to_string(::getpid());
    cert = dir + "/cert.pem";
    key = dir + "/key.pem";
    const std::string cmd =
        "mkdir -p " + dir +
        " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 " +
        subject_and_extensions + " -keyout " + key + " -out " + cert + " 2>/dev/null";
    if (std::system(cmd.c_str()) != 0) std::abort();
  }
  ~TestCert() { std::system(("rm -rf " + dir).c_str()); }
  TestCert(const TestCert&) = delete;
  TestCert& operator=(const TestCert&) = delete;
};

// For "localhost" (CN and subjectAltName), its own trust anchor.
inline const TestCert& test_cert() {
  static TestCert c;
  return c;
}
#endif
