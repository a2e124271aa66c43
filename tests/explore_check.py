"""explore_check.py — `vae explore`'s page in Debian's headless Chromium, driven through the
DevTools protocol (python3-websocket; no downloaded browser): the page's decoder against the
library's, its speed, a drag, a slider, a click on a point, an interpolation (each compared by
screenshots), the frame rate while dragging, a conditional and a tabular page, and no console
error (the page's strict CSP reports any eval or foreign script there).

    python3 explore_check.py CHROMIUM PAGES_DIR SCREENSHOT.png
    python3 explore_check.py --picture CHROMIUM PAGE.html OUT.png   (a screenshot, no checks)

PAGES_DIR holds from test_explore_page.sh: image.html (fp32) + image.safetensors, image16.html
(fp16), cond.html + cond.safetensors, table.html + table.safetensors. Prints ok/not ok lines."""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
import websocket

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import vae  # noqa: E402


def ok(name, cond, *why):
    print(("ok " if cond else "not ok ") + name)
    if not cond:
        for line in why:
            print("#   " + str(line))
    return cond


class Browser:
    """One headless Chromium and one page of it, over the DevTools protocol."""

    def __init__(self, chromium):
        self.profile = tempfile.mkdtemp()
        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-port=0", "--user-data-dir=" + self.profile,
             "--window-size=1280,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        for _ in range(300):
            if os.path.exists(port_file) and open(port_file).read().strip():
                break
            time.sleep(0.1)
        port = open(port_file).read().split()[0]
        targets = json.load(urllib.request.urlopen("http://127.0.0.1:%s/json/list" % port))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60)
        self.next_id = 0
        self.events = []
        for domain in ("Runtime", "Log", "Page"):
            self.call(domain + ".enable")
        self.call("Emulation.setDeviceMetricsOverride", width=1280, height=1000,
                  deviceScaleFactor=1, mobile=False)

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (method, msg["error"]))
                return msg["result"]
            self.events.append(msg)

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError("%s: %s" % (expr[:60], r["exceptionDetails"]))
        return r["result"].get("value")

    def open(self, path):
        self.events.clear()
        self.call("Page.navigate", url="file://" + os.path.abspath(path))
        for _ in range(200):
            if self.eval("document.readyState") == "complete" and self.eval("!!window.vaeExplorer"):
                break
            time.sleep(0.05)
        self.eval("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")

    def errors(self):
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(p["exceptionDetails"].get("text"))
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(str(p.get("args")))
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(p["entry"].get("text"))
        return out

    def rect(self, selector):
        return self.eval("(() => { const r = document.querySelector(%r).getBoundingClientRect();"
                         " return [r.left, r.top, r.width, r.height]; })()" % selector)

    def shot(self, selector=None):
        """PNG bytes of an element (the whole viewport without one)."""
        params = {"format": "png"}
        if selector:
            x, y, w, h = self.rect(selector)
            params["clip"] = {"x": x, "y": y, "width": w, "height": h, "scale": 1}
        return base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])

    def frame(self):
        self.eval("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")

    def mouse(self, kind, x, y, buttons=1):
        self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                  buttons=buttons, clickCount=1 if kind != "mouseMoved" else 0)

    def key(self, key, code):
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, code=code,
                      windowsVirtualKeyCode={"ArrowRight": 39, "ArrowUp": 38}[key])

    def close(self):
        self.ws.close()
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def decoder_parity(b, name, model_path, bound):
    """The page's decoder against the library's (vae.VAE.inverse_transform) at 100 points."""
    model = vae.VAE.load(model_path, threads=1)
    L = model.latent_dim_
    z = np.random.default_rng(7).normal(size=(100, L)).astype(np.float32)
    labels = np.arange(100) % model.config_.n_classes if model.config_.n_classes else None
    want = model.inverse_transform(z, labels)
    got = np.array(b.eval("(%s).map((z, i) => vaeExplorer.decode(z, %s))" % (
        json.dumps(z.tolist()), "i %% %d" % model.config_.n_classes if labels is not None else "0")))
    err = float(np.abs(got - want).max())
    print("# %s: largest difference from the library's decoder over 100 points: %.3g" % (name, err))
    return ok("page_decoder_matches_library_" + name, got.shape == want.shape and err <= bound,
              "max |page - library| = %g (bound %g)" % (err, bound))


def image_page(b, pages, screenshot):
    b.open(os.path.join(pages, "image.html"))
    decoder_parity(b, "fp32", os.path.join(pages, "image.safetensors"), 1e-4)
    ms = b.eval("vaeExplorer.benchmark(1000)")
    print("# decode of the canonical model: %.4f ms" % ms)
    ok("decode_under_2ms", ms <= 2.0, "%.3f ms per decode" % ms)

    # a drag across the map, one pointer move per 8 ms for 2 s: the picture follows, and the
    # frames drawn per second are counted in the page
    x, y, w, h = b.rect("#map")
    before = b.shot("#decoded")
    f0, t0 = b.eval("[vaeExplorer.timing.frames, performance.now()]")
    b.mouse("mousePressed", x + w * 0.5, y + h * 0.5)
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < 2.0:
        t = i / 240.0
        b.mouse("mouseMoved", x + w * (0.5 + 0.35 * np.cos(t * 6.28)), y + h * (0.5 + 0.35 * np.sin(t * 6.28)))
        i += 1
        time.sleep(0.008)
    b.mouse("mouseReleased", x + w * 0.6, y + h * 0.5)
    f1, t1 = b.eval("[vaeExplorer.timing.frames, performance.now()]")
    fps = (f1 - f0) / ((t1 - t0) / 1000.0)
    print("# while dragging: %d pointer moves, %.1f frames decoded and drawn per second" % (i, fps))
    b.frame()
    after = b.shot("#decoded")
    ok("drag_changes_picture", before != after)
    ok("drag_sustains_60fps", fps >= 55, "%.1f frames per second" % fps)

    # a slider moved with the keyboard (focus, then arrow keys)
    before = b.shot("#decoded")
    z0 = b.eval("vaeExplorer.state.z[0]")
    b.eval("document.getElementById('z0').focus()")
    for _ in range(30):
        b.key("ArrowRight", "ArrowRight")
    b.frame()
    z1 = b.eval("vaeExplorer.state.z[0]")
    ok("slider_moves_latent_and_picture", z1 > z0 + 0.2 and b.shot("#decoded") != before,
       "z0 %g -> %g" % (z0, z1))

    # a click on a data point: it, its reconstruction and 8 neighbours; the picture is its
    # reconstruction
    px, py = b.eval("vaeExplorer.pointOnScreen(5)")
    b.mouse("mousePressed", px, py)
    b.mouse("mouseReleased", px, py, 0)
    b.frame()
    shown = b.eval("[document.querySelectorAll('#neighbours canvas').length,"
                   " document.getElementById('neighbours').dataset.neighbours, vaeExplorer.state.picked]")
    ok("click_shows_neighbours", shown[0] == 10 and len(shown[1].split(",")) == 8,
       "thumbnails %s, neighbours %s, picked %s" % tuple(shown))

    # interpolation: A here, B at another point; the strip's frames differ along it
    b.eval("document.getElementById('pickA').click()")
    qx, qy = b.eval("vaeExplorer.pointOnScreen(40)")
    b.mouse("mousePressed", qx, qy)
    b.mouse("mouseReleased", qx, qy, 0)
    b.eval("document.getElementById('pickB').click()")
    b.frame()
    strip = b.eval("(() => { const c = document.getElementById('strip'), g = c.getContext('2d');"
                   " const w = c.width / 10, first = g.getImageData(0, 0, w, c.height / 2).data,"
                   " last = g.getImageData(9 * w, 0, w, c.height / 2).data;"
                   " let d = 0; for (let i = 0; i < first.length; i++) d += Math.abs(first[i] - last[i]);"
                   " return [c.width, c.height, d / first.length]; })()")
    ok("interpolation_strip", strip[0] == 10 * 56 and strip[1] == 112 and strip[2] > 1,
       "strip %s" % strip)

    with open(screenshot, "wb") as f:
        f.write(b.shot())
    errs = b.errors()
    ok("image_page_no_console_errors", not errs, *errs[:5])
    size = os.path.getsize(os.path.join(pages, "image.html"))
    print("# page of the canonical model with 2,000 thumbnails: %d bytes" % size)
    ok("page_under_3MB", size <= 3_000_000, "%d bytes" % size)


def other_pages(b, pages):
    b.open(os.path.join(pages, "image16.html"))
    decoder_parity(b, "fp16", os.path.join(pages, "image.safetensors"), 1e-3)

    b.open(os.path.join(pages, "cond.html"))
    decoder_parity(b, "conditional", os.path.join(pages, "cond.safetensors"), 1e-4)
    before = b.shot("#decoded")
    b.eval("(() => { const s = document.getElementById('label'); s.value = 7;"
           " s.dispatchEvent(new Event('change')); })()")
    b.frame()
    ok("label_selector_changes_picture", b.shot("#decoded") != before)
    errs = b.errors()
    ok("conditional_page_no_console_errors", not errs, *errs[:5])

    b.open(os.path.join(pages, "table.html"))
    decoder_parity(b, "tabular", os.path.join(pages, "table.safetensors"), 1e-4)
    bars = b.eval("(() => { const c = document.getElementById('decoded'), d = c.getContext('2d')"
                  ".getImageData(0, 0, c.width, c.height).data; let blue = 0;"
                  " for (let i = 0; i < d.length; i += 4) blue += d[i + 2] > 200 && d[i] < 100;"
                  " return blue; })()")
    ok("tabular_page_draws_bars", bars > 200, "%d bar pixels" % bars)
    errs = b.errors()
    ok("tabular_page_no_console_errors", not errs, *errs[:5])


def picture(chromium, page, out):
    """A screenshot of a page after a click on a point and an interpolation (the README's)."""
    b = Browser(chromium)
    try:
        b.open(page)
        for i, button in ((12, "pickA"), (31, "pickB"), (7, None)):
            x, y = b.eval("vaeExplorer.pointOnScreen(%d)" % i)
            b.mouse("mousePressed", x, y)
            b.mouse("mouseReleased", x, y, 0)
            if button:
                b.eval("document.getElementById(%r).click()" % button)
        b.frame()
        with open(out, "wb") as f:
            f.write(b.shot())
    finally:
        b.close()


def main():
    if sys.argv[1] == "--picture":  # explore_check.py --picture CHROMIUM PAGE OUT.png
        return picture(*sys.argv[2:5])
    chromium, pages, screenshot = sys.argv[1:4]
    b = Browser(chromium)
    try:
        image_page(b, pages, screenshot)
        other_pages(b, pages)
    finally:
        b.close()


if __name__ == "__main__":
    main()
