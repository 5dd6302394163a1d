#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
# The servers behind an allowed name, for dns_test.cc's name check tests: TLS on HOST:443
# (a self-signed certificate) answers "tls-ok SNI", HTTP on HOST:80 answers "http-ok HOST".
# Each connection served is one line on stdout ("tls NAME", "http NAME"): a name the
# check refused must never show up here.
import socket, ssl, sys, threading

host, cert, key = sys.argv[1:4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
seen = threading.Lock()


def log(line):
    with seen:
        print(line, flush=True)


def serve_tls(conn):
    names = []
    ctx2 = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx2.load_cert_chain(cert, key)
    ctx2.sni_callback = lambda s, name, c: names.append(name)
    try:
        t = ctx2.wrap_socket(conn, server_side=True)
        log('tls %s' % (names[0] if names else '-'))
        t.recv(100)
        t.sendall(('tls-ok %s\n' % (names[0] if names else '-')).encode())
        t.close()
    except Exception as e:
        log('tls-error %s' % type(e).__name__)


def serve_http(conn):
    # Keep-alive as a real server: requests are answered one after another until one asks
    # for Connection: close (or the client leaves), each logged with its Host.
    data = b''
    while True:
        while b'\r\n\r\n' not in data:
            b = conn.recv(4096)
            if not b:
                conn.close()
                return
            data += b
        req, data = data.split(b'\r\n\r\n', 1)
        lines = req.split(b'\r\n')
        h = [l.split(b':', 1)[1].strip().decode() for l in lines if l.lower().startswith(b'host:')]
        close = any(l.lower().replace(b' ', b'') == b'connection:close' for l in lines)
        log('http %s' % (h[0] if h else '-'))
        body = ('http-ok %s' % (h[0] if h else '-')).encode()
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n' % len(body) + body)
        if close:
            conn.close()
            return


def listen(port, handler):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(64)

    def loop():
        while True:
            c, _ = s.accept()
            threading.Thread(target=handler, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()


listen(443, serve_tls)
listen(80, serve_http)
log('ready')
threading.Event().wait()
