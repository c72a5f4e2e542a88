// Debian 12's civetweb (1.15, built for the OpenSSL 1.1 API) loads "libssl.so" at run time and
// calls SSL_get_peer_certificate after every TLS handshake; OpenSSL 3 renamed it
// SSL_get1_peer_certificate (same reference counting) and exports only the new name, so the
// call jumps to a null pointer. This library has libssl.so as its soname and libssl.so.3 as its
// dependency: loaded before civetweb initialises TLS (openai_http_server.cc), civetweb's
// dlopen("libssl.so") finds it, and its dlsym() finds the old name here and the rest in
// libssl.so.3.
#include <openssl/ssl.h>

#undef SSL_get_peer_certificate  // OpenSSL 3 maps the old name to the new one in its header.

X509* SSL_get_peer_certificate(const SSL* ssl);
X509* SSL_get_peer_certificate(const SSL* ssl) { return SSL_get1_peer_certificate(ssl); }
