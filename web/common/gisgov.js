/* gisgov 公共脚本: what every signed-in page shares (dashboard, grid editor, audit log). Load it before the
 * page's own script; it defines window.gisgov and nothing else.
 *   gisgov.csrf()           the CSRF token (the gisgov_csrf cookie), "" when there is none
 *   gisgov.api(url, opts)   fetch with same-origin credentials, Accept JSON; opts.method (default GET),
 *                           opts.body (sent as JSON on non-GET, with X-CSRF-Token). Resolves to the parsed
 *                           JSON body; rejects with an Error carrying .status and the server's detail.
 *                           401 sends the browser to /login?next=<this page> (and still rejects).
 *   gisgov.whoami(el)       fills the user badge from GET /api/auth/me: .me-name = display name,
 *                           .me-role = role label (· scope); el.dataset.username/role; shows el.
 *   gisgov.signOut(button)  POST /api/auth/logout with the token; success (or already signed out, 401)
 *                           goes to /login; any other failure keeps the page, re-enables the button and
 *                           shows the error (the session may still be live, so never pretend otherwise).
 *   gisgov.bindSignOut(el)  el's clicks call signOut(el).
 * Maps (when leaflet.js is loaded before this file): every L.map gets, with no page code,
 *   - Leaflet's attribution without the flag (a plain "Leaflet" link);
 *   - the configured basemap (the page's #gisgov-config: basemap, or basemap_url / basemap_attribution): a
 *     Tianditu label layer over its base, several tile hosts; a page's own L.tileLayer of the same URL is
 *     dropped so tiles are not loaded twice;
 *   - for GCJ-02 tiles (AMap, Tencent, or a custom server with GISGOV_BASEMAP_CRS=gcj02) a map CRS whose
 *     projection shifts WGS84 to GCJ-02 before spherical mercator (gisgov.crs.GCJ02, set as the default
 *     crs of every map before the page makes one): the data land on the tiles, clicks come back in WGS84;
 *   - geographic context under the page's layers (pane "gisgovContext", below the overlays, nothing
 *     clickable): water, roads (arterials thicker; /api/context for the view, simplified by zoom) and
 *     facilities (off until switched on in the layer control "地理要素 Context"). The map's container
 *     gets data-context="ready" and data-context-roads / -water / -facilities counts after each load.
 *     A map made with {gisgovContext: false} gets none of this but the attribution. (folium maps do not load
 *     this file: their builders draw basemap and context, and inline the <gcj02> part below.)
 *   gisgov.crs.wgs2gcj([lng, lat]) / gcj2wgs([lng, lat]) / GCJ02 (the L.CRS)
 *   gisgov.maps     every Leaflet map made on the page (for tests and the console)
 *   gisgov.basemap  the basemap in use: {kind, crs, attribution, layers: [{url, subdomains, max_zoom, overlay}]}
 * No inline scripts (CSP), no framework, nothing loaded from elsewhere. */
(function (window, document) {
  "use strict";

  var CSRF_COOKIE = "gisgov_csrf";

  function cookie(name) {
    var parts = document.cookie ? document.cookie.split(";") : [];
    for (var i = 0; i < parts.length; i++) {
      var part = parts[i].replace(/^\s+/, "");
      var eq = part.indexOf("=");
      if (eq > 0 && part.slice(0, eq) === name) {
        try { return decodeURIComponent(part.slice(eq + 1)); } catch (e) { return part.slice(eq + 1); }
      }
    }
    return "";
  }

  function csrf() { return cookie(CSRF_COOKIE); }

  // where to come back to after signing in: this page with its query and hash (the dashboard keeps its
  // place in the hash); the sign-in page only follows same-site paths
  function signIn() {
    var l = window.location;
    l.assign("/login?next=" + encodeURIComponent(l.pathname + l.search + l.hash));
  }

  function detail(body, status) {
    var d = body && (body.detail || body.message);
    if (d && typeof d !== "string") d = JSON.stringify(d);
    return d || ("HTTP " + status);
  }

  function api(url, opts) {
    opts = opts || {};
    var method = (opts.method || "GET").toUpperCase();
    var headers = { Accept: "application/json" };
    var init = { method: method, credentials: "same-origin", headers: headers };
    if (method !== "GET" && method !== "HEAD") {
      headers["Content-Type"] = "application/json";
      headers["X-CSRF-Token"] = csrf();
      init.body = JSON.stringify(opts.body === undefined ? {} : opts.body);
    }
    return window.fetch(url, init).then(function (r) {
      if (r.status === 401) {
        signIn();
        var e401 = new Error("请先登录 sign in first");
        e401.status = 401;
        throw e401;
      }
      return r.json().catch(function () { return {}; }).then(function (body) {
        if (!r.ok) {
          var e = new Error(detail(body, r.status));
          e.status = r.status;
          e.body = body;
          throw e;
        }
        return body;
      });
    });
  }

  function element(el) { return typeof el === "string" ? document.getElementById(el) : el; }

  function whoami(el) {
    el = element(el);
    return api("/api/auth/me").then(function (me) {
      var name = el.querySelector(".me-name");
      var role = el.querySelector(".me-role");
      var who = me.display_name || me.username;
      var label = (me.role_label || me.role) + (me.scope ? " · " + me.scope : "");
      if (name) name.textContent = who;
      if (role) role.textContent = label;
      if (!name && !role) el.textContent = who + " · " + label;
      el.dataset.username = me.username;
      el.dataset.role = me.role;
      el.title = who + "（" + me.username + "）" + label;
      el.hidden = false;
      return me;
    }).catch(function () {
      el.hidden = true;  // a 401 is already on its way to /login; the page reports other failures itself
      return null;
    });
  }

  // one line at the top of the page for failures that belong to no panel (sign-out)
  function flash(msg) {
    var box = document.getElementById("gisgov-flash");
    if (!box) {
      box = document.createElement("div");
      box.id = "gisgov-flash";
      box.className = "gisgov-flash";
      box.setAttribute("role", "alert");
      document.body.appendChild(box);
      box.addEventListener("click", function () { box.hidden = true; });
    }
    box.textContent = msg;
    box.hidden = false;
  }

  function signOut(button) {
    button = element(button);
    if (button) button.disabled = true;
    return window.fetch("/api/auth/logout", {
      method: "POST", credentials: "same-origin",
      headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: "{}"
    }).then(function (r) {
      // 401: the session had already ended, which is what the user asked for
      if (!r.ok && r.status !== 401) {
        return r.json().catch(function () { return {}; }).then(function (body) { throw new Error(detail(body, r.status)); });
      }
      window.location.assign("/login");
      return true;
    }).catch(function (err) {
      if (button) button.disabled = false;
      flash("退出失败，仍处于登录状态 Could not sign out, you are still signed in: " + err.message);
      return false;
    });
  }

  function bindSignOut(el) {
    el = element(el);
    el.addEventListener("click", function () { signOut(el); });
  }

  window.gisgov = { csrf: csrf, api: api, whoami: whoami, signOut: signOut, bindSignOut: bindSignOut, signIn: signIn };

  // ---- maps: datum, basemap, attribution, geographic context -------------------------------------------

  // <gcj02> (folium maps inline this part: gisgov.maps.offline.finish_page)
  // WGS84 -> GCJ-02 (the published offset of Chinese web maps; none outside China) and the inverse by
  // fixed-point iteration (converges to < 1e-9 degrees in a few steps)
  var PI = Math.PI, GCJ_A = 6378245.0, GCJ_EE = 0.00669342162296594323;
  function outOfChina(lng, lat) { return lng < 72.004 || lng > 137.8347 || lat < 0.8293 || lat > 55.8271; }
  function tLat(x, y) {
    var r = -100 + 2 * x + 3 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * Math.sqrt(Math.abs(x));
    r += (20 * Math.sin(6 * x * PI) + 20 * Math.sin(2 * x * PI)) * 2 / 3;
    r += (20 * Math.sin(y * PI) + 40 * Math.sin(y / 3 * PI)) * 2 / 3;
    return r + (160 * Math.sin(y / 12 * PI) + 320 * Math.sin(y * PI / 30)) * 2 / 3;
  }
  function tLng(x, y) {
    var r = 300 + x + 2 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * Math.sqrt(Math.abs(x));
    r += (20 * Math.sin(6 * x * PI) + 20 * Math.sin(2 * x * PI)) * 2 / 3;
    r += (20 * Math.sin(x * PI) + 40 * Math.sin(x / 3 * PI)) * 2 / 3;
    return r + (150 * Math.sin(x / 12 * PI) + 300 * Math.sin(x / 30 * PI)) * 2 / 3;
  }
  function wgs2gcj(ll) {
    var lng = ll[0], lat = ll[1];
    if (outOfChina(lng, lat)) return [lng, lat];
    var dLat = tLat(lng - 105, lat - 35), dLng = tLng(lng - 105, lat - 35);
    var rad = lat / 180 * PI, magic = 1 - GCJ_EE * Math.sin(rad) * Math.sin(rad), sq = Math.sqrt(magic);
    dLat = (dLat * 180) / ((GCJ_A * (1 - GCJ_EE)) / (magic * sq) * PI);
    dLng = (dLng * 180) / (GCJ_A / sq * Math.cos(rad) * PI);
    return [lng + dLng, lat + dLat];
  }
  function gcj2wgs(ll) {
    if (outOfChina(ll[0], ll[1])) return [ll[0], ll[1]];
    var w = [ll[0], ll[1]];
    for (var i = 0; i < 30; i++) {
      var g = wgs2gcj(w), dx = g[0] - ll[0], dy = g[1] - ll[1];
      w = [w[0] - dx, w[1] - dy];
      if (Math.abs(dx) < 1e-11 && Math.abs(dy) < 1e-11) break;
    }
    return w;
  }
  function gcjCrs(L) {
    var SM = L.Projection.SphericalMercator;
    var projection = {
      R: SM.R,
      MAX_LATITUDE: SM.MAX_LATITUDE,
      bounds: SM.bounds,
      project: function (latlng) {
        var g = wgs2gcj([latlng.lng, latlng.lat]);
        return SM.project(L.latLng(g[1], g[0]));
      },
      unproject: function (point) {
        var g = SM.unproject(point), w = gcj2wgs([g.lng, g.lat]);
        return L.latLng(w[1], w[0]);
      }
    };
    return L.extend({}, L.CRS.EPSG3857, { code: "GCJ02:3857", projection: projection });
  }
  // </gcj02>
  window.gisgov.crs = { wgs2gcj: wgs2gcj, gcj2wgs: gcj2wgs, GCJ02: null };

  function readConfig() {
    var el = document.getElementById("gisgov-config");
    if (!el) return {};
    try { return JSON.parse(el.textContent) || {}; } catch (e) { return {}; }
  }

  // the basemap: the server's description when the page has one, else read from basemap_url
  function basemapOf(cfg) {
    if (cfg.basemap && typeof cfg.basemap === "object") return cfg.basemap;
    var url = cfg.basemap_url;
    if (!url) return { kind: "none", crs: "wgs84", attribution: "", layers: [] };
    var layers = [{ url: url, subdomains: "abc", max_zoom: 19, overlay: false }];
    var kind = "custom", crs = "wgs84";
    if (/\.tianditu\.gov\.cn\//.test(url)) {
      kind = "tianditu";
      var sub = url.replace(/\/\/t\d\./, "//t{s}.");
      layers = [{ url: sub, subdomains: "01234567", max_zoom: 18, overlay: false }];
      if (/vec_w/.test(url)) layers.push({ url: sub.replace("vec_w", "cva_w").replace("LAYER=vec", "LAYER=cva"), subdomains: "01234567", max_zoom: 18, overlay: true });
    } else if (/\.autonavi\.com\//.test(url)) {
      kind = "amap"; crs = "gcj02";
      layers = [{ url: url.replace(/\/\/webrd0\d\./, "//webrd0{s}."), subdomains: "1234", max_zoom: 18, overlay: false }];
    } else if (/\.(gtimg\.com|map\.qq\.com)\//.test(url)) {
      kind = "tencent"; crs = "gcj02";
      layers = [{ url: url.replace(/\/\/rt\d\./, "//rt{s}."), subdomains: "0123", max_zoom: 18, overlay: false }];
    }
    return { kind: kind, crs: crs, attribution: cfg.basemap_attribution || "", layers: layers };
  }

  var CONFIG = readConfig();
  var BASEMAP = basemapOf(CONFIG);
  window.gisgov.basemap = BASEMAP;
  var LEAFLET_PREFIX = '<a href="https://leafletjs.com" title="Leaflet, a JavaScript library for interactive maps">Leaflet</a>';
  var MAX_SPAN = 2.0;  // degrees a side, as /api/context accepts
  var MIN_CONTEXT_ZOOM = 10;

  function addBasemap(map) {
    var ours = [];
    BASEMAP.layers.forEach(function (b) {
      ours.push(L.tileLayer(b.url, {
        subdomains: b.subdomains || "abc", maxZoom: 20, maxNativeZoom: b.max_zoom || 19,
        attribution: b.overlay ? "" : (BASEMAP.attribution || ""), gisgovBasemap: true, pane: "tilePane",
        zIndex: b.overlay ? 2 : 1
      }).addTo(map));
    });
    // a page's own tile layer of the configured URL: drop it, ours already draws that basemap
    if (CONFIG.basemap_url) {
      map.on("layeradd", function (e) {
        var l = e.layer;
        if (l instanceof L.TileLayer && !l.options.gisgovBasemap && l._url === CONFIG.basemap_url) {
          window.setTimeout(function () { map.removeLayer(l); }, 0);
        }
      });
    }
    if (!ours.length && map.attributionControl) map.attributionControl.addAttribution("无底图 no basemap (offline)");
  }

  var ROAD_STYLE = {
    arterial: { casing: 7, line: 4.5 },
    local: { casing: 4, line: 2.5 },
    bridge: { casing: 4, line: 2.5 },
    other: { casing: 3, line: 1.8 },
    path: { casing: 0, line: 1.2 }
  };

  function setupContext(map) {
    var pane = map.createPane("gisgovContext");
    pane.style.zIndex = 250;  // over the tiles (200), under the page's overlays (400)
    pane.style.pointerEvents = "none";
    var renderer = L.svg({ pane: "gisgovContext", padding: 0.3 });
    var base = { pane: "gisgovContext", renderer: renderer, interactive: false };
    var water = L.geoJSON(null, { style: function () {
      return L.extend({ color: "#8fb8d6", weight: 1, fillColor: "#b7d7ee", fillOpacity: 0.85 }, base);
    } });
    var casing = L.geoJSON(null, { style: function (f) {
      var s = ROAD_STYLE[f.properties.class] || ROAD_STYLE.other;
      return L.extend({ color: "#a3acb7", weight: s.casing, opacity: s.casing ? 0.9 : 0, lineCap: "round" }, base);
    } });
    var lines = L.geoJSON(null, { style: function (f) {
      var c = f.properties.class, s = ROAD_STYLE[c] || ROAD_STYLE.other;
      return L.extend({ color: c === "path" ? "#9aa3ad" : "#ffffff", weight: s.line, dashArray: c === "path" ? "3 3" : null,
        lineCap: "round", lineJoin: "round" }, base);
    } });
    var roads = L.layerGroup([casing, lines]);
    var facilities = L.geoJSON(null, {
      pointToLayer: function (f, ll) {
        return L.circleMarker(ll, L.extend({}, base, { radius: 4, color: "#ffffff", weight: 1, fillColor: "#7b1fa2", fillOpacity: 0.9 }));
      },
      onEachFeature: function (f, l) {
        var p = f.properties || {};
        l.bindTooltip((p.name || "") + (p.category ? "（" + p.category + "）" : ""), { direction: "top" });
      }
    });
    water.addTo(map);
    roads.addTo(map);
    var overlays = { "水系 Water": water, "道路 Roads": roads, "设施 Facilities": facilities };
    L.control.layers(null, overlays, { position: "topright", collapsed: true }).addTo(map);
    var el = map.getContainer();
    var seq = 0, timer = null, want = { facilities: false };
    map.on("overlayadd overlayremove", function (e) {
      if (e.layer === facilities) { want.facilities = e.type === "overlayadd"; load(); }
    });

    function box() {
      var b = map.getBounds(), c = map.getCenter(), h = MAX_SPAN / 2 - 1e-6;
      var x0 = Math.max(b.getWest(), c.lng - h, -180), x1 = Math.min(b.getEast(), c.lng + h, 180);
      var y0 = Math.max(b.getSouth(), c.lat - h, -85), y1 = Math.min(b.getNorth(), c.lat + h, 85);
      return [x0, y0, x1, y1].map(function (v) { return v.toFixed(6); }).join(",");
    }

    function load() {
      var n = ++seq;
      var z = Math.round(map.getZoom());
      if (z < MIN_CONTEXT_ZOOM) {
        [water, casing, lines, facilities].forEach(function (g) { g.clearLayers(); });
        el.dataset.context = "ready";
        return;
      }
      el.dataset.context = "loading";
      window.fetch("/api/context?bbox=" + box() + "&zoom=" + z, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (d) {
          if (n !== seq) return;
          if (!d) { el.dataset.context = "failed"; return; }
          water.clearLayers().addData(d.water);
          casing.clearLayers().addData(d.roads);
          lines.clearLayers().addData(d.roads);
          facilities.clearLayers();
          if (d.facilities) facilities.addData(d.facilities);
          el.dataset.contextRoads = d.roads.features.length;
          el.dataset.contextWater = d.water.features.length;
          el.dataset.contextFacilities = d.facilities ? d.facilities.features.length : 0;
          el.dataset.context = "ready";
        })
        .catch(function () { if (n === seq) el.dataset.context = "failed"; });
    }

    function later() {
      window.clearTimeout(timer);
      timer = window.setTimeout(load, 200);
    }
    map.whenReady(function () { later(); map.on("moveend", later); });
    map.gisgovContext = { water: water, roads: roads, facilities: facilities, reload: load };
  }

  var L = window.L;
  if (L && L.Map && L.Map.addInitHook) {
    window.gisgov.crs.GCJ02 = gcjCrs(L);
    if (BASEMAP.crs === "gcj02") L.Map.mergeOptions({ crs: window.gisgov.crs.GCJ02 });
    window.gisgov.maps = [];
    L.Map.addInitHook(function () {
      var map = this;
      window.gisgov.maps.push(map);
      if (map.attributionControl) map.attributionControl.setPrefix(LEAFLET_PREFIX);
      if (map.options.gisgovContext === false || map.options.crs === L.CRS.Simple) return;
      addBasemap(map);
      setupContext(map);
    });
  }
})(window, document);
