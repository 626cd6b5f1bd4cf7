"""The seed: pycket's demo app on Tornado, with its port, cookie_secret and
Redis port taken from the environment (PORT, COOKIE_SECRET, REDIS_PORT;
ENGINE=memcached with MEMCACHED_PORT for pycket's other engine),
plus a notification set and read (/notify?msg=, /flash) and /health (no
session), for the tests and for bench/run --pycket."""

import os

import tornado.ioloop
import tornado.web
from pycket.notification import NotificationMixin
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


class Notify(tornado.web.RequestHandler, SessionMixin, NotificationMixin):
    def get(self):
        self.notifications.set("flash", self.get_argument("msg"))
        self.write("notified")


class Flash(tornado.web.RequestHandler, SessionMixin, NotificationMixin):
    def get(self):
        self.write("flash: %s" % self.notifications.get("flash"))


def pycket_settings():
    if os.environ.get("ENGINE") == "memcached":
        return {
            "engine": "memcached",
            "storage": {"servers": ("127.0.0.1:%s" % os.environ["MEMCACHED_PORT"],)},
        }
    return {
        "engine": "redis",
        "storage": {"host": "127.0.0.1", "port": int(os.environ["REDIS_PORT"])},
    }


def main():
    app = tornado.web.Application(
        [
            (r"/", Index),
            (r"/detail", Detail),
            (r"/health", Health),
            (r"/notify", Notify),
            (r"/flash", Flash),
        ],
        cookie_secret=os.environ["COOKIE_SECRET"],
        pycket=pycket_settings(),
    )
    app.listen(int(os.environ["PORT"]), address="127.0.0.1")
    tornado.ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
