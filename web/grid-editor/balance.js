/* 网格均衡 grid balance: bars of households and people against the rules, and the grid palette.
 * Placeholder: filled in by the balance work. Defines window.gridBalance. */
(function (window) {
  "use strict";
  window.gridBalance = window.gridBalance || null;
})(window);
