/* 方案版本 plan versions panel of the grid editor. Placeholder: filled in by the plan lifecycle work. */
(function (window) {
  "use strict";
  window.gridPlans = window.gridPlans || null;
})(window);
