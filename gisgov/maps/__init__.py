"""Maps: folium maps whose every asset is served by gisgov itself (works offline)."""
