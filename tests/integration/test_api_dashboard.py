"""The sidecar serves the web dashboard at /dashboard."""

from __future__ import annotations

import httpx

from services.api.app import create_app


async def test_the_sidecar_serves_the_dashboard_page_and_its_data(connections):
    app = create_app(connections, heartbeat=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            page = await client.get("/dashboard/")
            assert page.status_code == 200 and "STREAMER" in page.text
            listing = await client.get("/dashboard/api/usecases")
            assert listing.status_code == 200
            assert "kdd-cup-99" in {u["name"] for u in listing.json()["usecases"]}
