/* gisgov 矢量切片 vector tiles on a Leaflet map (Leaflet.VectorGrid, vendored): load after leaflet.js,
 * {{vendor:vectorgrid_js}} and gisgov.js.
 *   gisgov.tiles(map, layer, opts) -> the L.vectorGrid layer, added to map
 *     layer: a catalog layer name with tiles (building, compound, grid, facility) or "coverage"
 *            (/tiles/{layer}/{z}/{x}/{y}.pbf; the tile's MVT layer has the same name)
 *     opts.params  query parameters (e.g. {plan: 7, community: "340104001001"} for a draft's grids,
 *                  {category: "yiyuan", circle: "c15", profile: "standard"} for coverage)
 *     opts.style   Leaflet path options, or a function(properties, zoom) -> options
 *     opts.minZoom / opts.maxZoom  zooms at which the layer is shown (the server also sends empty tiles
 *                  below the layer's own tile min zoom)
 *     opts.onClick(properties, event)  makes the layer interactive
 *     opts.renderer "canvas" (fast; the default without onClick) or "svg" (the default with onClick: the
 *                  canvas renderer of Leaflet.VectorGrid 1.3 does not deliver clicks); opts.pane; opts.zIndex
 *   Added to the returned layer:
 *     .setParams(params)           new query parameters (e.g. another category), tiles redrawn
 *     .redraw()                    tiles fetched and drawn again (e.g. after the style function's inputs changed)
 *     .highlight(code, style)      restyle one feature by its code; .unhighlight(code)
 *   Feature properties: code, name, households, residents (counts layers), grid (buildings), the layer's
 *   tile fields; coverage: code, grid, distance_m, budget_m, within. An empty tile is an empty 200 body.
 *   A session that expired makes the server redirect to /login: such tiles are drawn empty (redirect
 *   "manual"), never parsed as a tile. */
(function (window) {
  "use strict";

  var DEFAULT_STYLE = { weight: 1, color: "#546e7a", fill: true, fillOpacity: 0.5, radius: 3 };

  function url(layer, params) {
    var q = "";
    if (params) {
      var clean = {};
      Object.keys(params).forEach(function (k) {
        if (params[k] !== null && params[k] !== undefined && params[k] !== "") clean[k] = params[k];
      });
      var s = new URLSearchParams(clean).toString();
      if (s) q = "?" + s;
    }
    return "/tiles/" + encodeURIComponent(layer) + "/{z}/{x}/{y}.pbf" + q;
  }

  function tiles(map, layer, opts) {
    opts = opts || {};
    var styles = {};
    styles[layer] = opts.style || DEFAULT_STYLE;
    var options = {
      vectorTileLayerStyles: styles,
      interactive: !!opts.onClick,
      rendererFactory: (opts.renderer || (opts.onClick ? "svg" : "canvas")) === "svg" ? L.svg.tile : L.canvas.tile,
      pane: opts.pane || "overlayPane",
      fetchOptions: { credentials: "same-origin", redirect: "manual" },
      getFeatureId: function (f) { return f.properties && f.properties.code; }
    };
    if (opts.minZoom !== undefined) options.minZoom = opts.minZoom;
    if (opts.maxZoom !== undefined) options.maxZoom = opts.maxZoom;
    if (opts.zIndex !== undefined) options.zIndex = opts.zIndex;
    var vg = L.vectorGrid.protobuf(url(layer, opts.params), options);
    if (opts.onClick) {
      vg.on("click", function (e) {
        if (e.originalEvent) L.DomEvent.stopPropagation(e.originalEvent);
        opts.onClick(e.layer.properties, e);
      });
    }
    // Leaflet 1.9's GridLayer.redraw() takes the map's zoom without rounding it: on a map with zoomSnap < 1
    // it asks for tiles at z = 18.5 (answered 400). Redraw through _setView, which rounds as panning does.
    vg.redraw = function () {
      if (!vg._map) return vg;
      vg._removeAllTiles();
      vg._tileZoom = undefined;
      vg._setView(vg._map.getCenter(), vg._map.getZoom());
      return vg;
    };
    vg.setParams = function (params) {
      opts.params = params;
      vg.setUrl(url(layer, params), false);
      return vg;
    };
    vg.highlight = function (code, style) {
      vg.setFeatureStyle(code, style || { weight: 3, color: "#0d47a1", fill: true, fillOpacity: 0.7, radius: 6 });
      return vg;
    };
    vg.unhighlight = function (code) {
      vg.resetFeatureStyle(code);
      return vg;
    };
    return vg.addTo(map);
  }

  window.gisgov = window.gisgov || {};
  window.gisgov.tiles = tiles;
})(window);
