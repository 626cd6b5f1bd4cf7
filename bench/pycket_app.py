"""The seed: pycket's demo app on Tornado, for a reference row.

    python pycket_app.py HTTP_PORT REDIS_PORT
"""

import sys

import tornado.ioloop
import tornado.web
from pycket.session import SessionMixin


class Index(tornado.web.RequestHandler, SessionMixin):
    def get(self):
        name = self.get_argument("name", None)
        if not name:
            raise tornado.web.HTTPError(400)
        self.session.set("login", name)
        self.write("index get ok!")


class Detail(tornado.web.RequestHandler, SessionMixin):
    def get(self):
        self.write("detail get ok! %s" % self.session.get("login"))


class Health(tornado.web.RequestHandler, SessionMixin):
    def get(self):
        self.write("ok")


def main():
    port, redis_port = int(sys.argv[1]), int(sys.argv[2])
    app = tornado.web.Application(
        [(r"/", Index), (r"/detail", Detail), (r"/health", Health)],
        cookie_secret="benchmark secret, at least thirty-two bytes long",
        pycket={
            "engine": "redis",
            "storage": {"host": "127.0.0.1", "port": redis_port, "db_sessions": 10, "db_notifications": 11},
            "cookies": {"expires_days": 1},
        },
    )
    app.listen(port, address="127.0.0.1")
    tornado.ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
