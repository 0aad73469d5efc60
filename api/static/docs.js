// The API's OpenAPI document in Swagger UI (vendored: api/static/package.json, `make vendor`). A script file of
// its own, not inline: the page's Content-Security-Policy allows only this origin's scripts.
"use strict";
// validatorUrl: null, or Swagger UI shows a badge from validator.swagger.io (another origin) on any real host.
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null });
