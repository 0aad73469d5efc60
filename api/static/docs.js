// The API's OpenAPI document in Swagger UI (vendored: api/static/package.json, `make vendor`). A script file of
// its own, not inline: the page's Content-Security-Policy allows only this origin's scripts.
"use strict";
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
