"use strict";
// The Catalens search page: text search, filters, "more like this", paging.
const $ = (id) => document.getElementById(id);
const grid = $("grid"), status = $("status"), more = $("more");
let current = null; // {path, params} of the last search, for paging
let modes = []; // the modes the server answers (from /info); the switch shows those

function chosenMode() {
  const checked = document.querySelector('input[name="mode"]:checked');
  return checked && !checked.disabled ? checked.value : "";
}

function filterParams() {
  const params = new URLSearchParams();
  const category = $("category").value.trim();
  if (category) params.append("category", category);
  for (const name of ["price_min", "price_max"]) {
    if ($(name).value !== "") params.set(name, $(name).value);
  }
  params.set("k", $("k").value);
  return params;
}

// A product id may hold any character ("ABC/123", "50%", "#1"): always one encoded
// path segment, which the API decodes after routing.
function productUrl(productId, tail = "") {
  return `/products/${encodeURIComponent(productId)}${tail}`;
}

// The image a result matched: URLs as they are; paths and inline images through the API,
// which serves any of a product's images by its id.
function imageUrl(result) {
  const ref = result.image || "";
  if (ref.startsWith("http://") || ref.startsWith("https://")) return ref;
  const id = result.matched_image || "0";
  return productUrl(result.product_id, `/image?id=${encodeURIComponent(id)}`);
}

function card(result) {
  const node = $("card").content.firstElementChild.cloneNode(true);
  const attrs = result.attributes || {};
  const name = result.name || attrs.name || result.product_id;
  const img = node.querySelector("img");
  img.src = imageUrl(result);
  img.alt = name;
  node.querySelector(".name").textContent = name;
  const count = result.images || 1;
  const badge = node.querySelector(".images");
  badge.hidden = count < 2;
  badge.textContent = `${count} images`;
  badge.title = `matched image: ${result.matched_image || "0"}`;
  const details = [attrs.category, attrs.colour, attrs.price !== undefined ? `€${Number(attrs.price).toFixed(2)}` : null];
  node.querySelector(".details").textContent = details.filter(Boolean).join(" · ");
  const words = node.querySelector(".words");
  const matched = result.matched_words || [];
  words.hidden = matched.length === 0;
  words.textContent = `matched: ${matched.join(", ")}`;
  node.querySelector(".score").textContent = `score ${result.score.toFixed(3)}`;
  node.querySelector(".similar").addEventListener("click", () => similar(result));
  node.dataset.productId = result.product_id;
  return node;
}

async function run(path, params, append) {
  grid.classList.add("loading");
  status.classList.remove("error");
  status.textContent = "Searching…";
  more.hidden = true;
  try {
    const response = await fetch(`${path}?${params}`);
    const body = await response.json();
    if (!response.ok) throw new Error(body.message || response.statusText);
    if (!append) grid.replaceChildren();
    body.results.forEach((result) => grid.appendChild(card(result)));
    const shown = grid.children.length;
    status.textContent = shown
      ? `${shown} result${shown === 1 ? "" : "s"} in ${body.took_ms.toFixed(1)} ms`
      : "Nothing matches. Try other words or fewer filters.";
    more.hidden = body.results.length < Number(params.get("k"));
    current = { path, params };
  } catch (error) {
    status.classList.add("error");
    status.textContent = `Search failed: ${error.message}`;
  } finally {
    grid.classList.remove("loading");
  }
}

function search(event) {
  if (event) event.preventDefault();
  const q = $("q").value.trim();
  if (!q) { status.textContent = "Type what you are looking for."; return; }
  const params = filterParams();
  params.set("q", q);
  const mode = chosenMode();
  if (mode) params.set("mode", mode);
  history.replaceState(null, "", `/?${params}`);
  run("/search", params, false);
}

function similar(result) {
  const name = result.name || (result.attributes || {}).name || result.product_id;
  $("q").value = "";
  const params = filterParams();
  history.replaceState(null, "", `/?similar=${encodeURIComponent(result.product_id)}`);
  run(productUrl(result.product_id, "/similar"), params, false)
    .then(() => { if (!status.classList.contains("error")) status.textContent += ` — like “${name}”`; });
}

more.addEventListener("click", () => {
  if (!current) return;
  const params = new URLSearchParams(current.params);
  params.set("offset", String(grid.children.length));
  run(current.path, params, true);
});
$("search").addEventListener("submit", search);

// Say so when the model has random weights, or its results look like a broken search.
// and offer the search modes this server answers, its default checked.
fetch("/info")
  .then((response) => (response.ok ? response.json() : {}))
  .then((info) => {
    $("notice").hidden = !info.random_weights;
    modes = info.modes || [];
    const wanted = new URLSearchParams(location.search).get("mode") || info.default_mode;
    for (const input of document.querySelectorAll('input[name="mode"]')) {
      input.disabled = !modes.includes(input.value);
      input.parentElement.hidden = input.disabled;
      input.checked = input.value === wanted && !input.disabled;
      input.addEventListener("change", () => { if ($("q").value.trim()) search(); });
    }
    $("modes").hidden = modes.length < 2;
  })
  .catch(() => {});

const initial = new URLSearchParams(location.search);
if (initial.get("q")) {
  $("q").value = initial.get("q");
  const mode = document.querySelector(`input[name="mode"][value="${initial.get("mode")}"]`);
  if (mode) mode.checked = true;
  if (initial.get("category")) $("category").value = initial.get("category");
  search();
} else if (initial.get("similar")) {
  similar({ product_id: initial.get("similar"), attributes: {} });
}
