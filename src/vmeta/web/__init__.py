"""Web parts shared by the review page (`vmeta data review`) and the chat app (`vmeta serve`).

`vmeta.web.common` holds the Python side (range file responses, token/same-origin checks, static mounting,
JSON errors, i18n); `vmeta/web/static/` holds the shared CSS (`css/base.css`), the i18n ES module
(`js/i18n.js`) and the message tables (`i18n/zh.json`, `i18n/en.json`) the pages load with no build step.
"""
