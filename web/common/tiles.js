/* gisgov 矢量切片 vector tiles on a Leaflet map (Leaflet.VectorGrid, vendored): load after leaflet.js,
 * {{vendor:vectorgrid_js}} and gisgov.js.
 *   gisgov.tiles(map, layer, opts) -> the L.vectorGrid layer, added to map
 *     layer: a catalog layer name (/tiles/{layer}/{z}/{x}/{y}.pbf; the tile's MVT layer has the same name)
 *     opts.params  query parameters (e.g. {plan: 7} for a draft's grids, {category, circle, profile})
 *     opts.style   Leaflet path options, or a function(properties, zoom) -> options
 *     opts.minZoom / opts.maxZoom, opts.onClick(properties, event), opts.pane */
(function (window) {
  "use strict";

  function tiles(map, layer, opts) {
    opts = opts || {};
    var q = opts.params ? "?" + new URLSearchParams(opts.params).toString() : "";
    var styles = {};
    styles[layer] = opts.style || { weight: 1, color: "#546e7a", fill: true, fillOpacity: 0.5, radius: 3 };
    var vg = L.vectorGrid.protobuf("/tiles/" + encodeURIComponent(layer) + "/{z}/{x}/{y}.pbf" + q, {
      vectorTileLayerStyles: styles,
      interactive: !!opts.onClick,
      rendererFactory: L.canvas.tile,
      minZoom: opts.minZoom,
      maxZoom: opts.maxZoom,
      pane: opts.pane || "overlayPane",
      fetchOptions: { credentials: "same-origin" },
      getFeatureId: function (f) { return f.properties && f.properties.code; }
    });
    if (opts.onClick) vg.on("click", function (e) { opts.onClick(e.layer.properties, e); });
    return vg.addTo(map);
  }

  window.gisgov = window.gisgov || {};
  window.gisgov.tiles = tiles;
})(window);
