"""Running the grids (issue 13): staff 一格三员 (:mod:`.staff`), compound rules (:mod:`.compounds`),
both pure, and their SQL (:mod:`.store`); settings in :mod:`.settings`."""
