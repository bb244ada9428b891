// The reviewer inbox's only script: keyboard shortcuts, live deadlines, and
// polling the list for new approvals. Served from this origin (the pages'
// Content-Security-Policy allows no inline script); it never sees the API key.
(function () {
  "use strict";

  var page = document.body.getAttribute("data-page");
  var lastKey = "";

  // -- time ------------------------------------------------------------------
  function span(seconds) {
    seconds = Math.abs(Math.floor(seconds));
    if (seconds < 60) return seconds + "s";
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + "m";
    var hours = Math.floor(minutes / 60);
    minutes = minutes % 60;
    if (hours < 48) return hours + "h " + (minutes < 10 ? "0" : "") + minutes + "m";
    return Math.floor(hours / 24) + "d " + (hours % 24) + "h";
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-deadline]").forEach(function (el) {
      var at = Date.parse(el.getAttribute("data-deadline"));
      if (isNaN(at)) return;
      var left = (at - now) / 1000;
      el.textContent = left >= 0 ? "in " + span(left) : "overdue by " + span(left);
      el.classList.toggle("overdue", left < 0);
      el.classList.toggle("soon", left >= 0 && left < 3600);
    });
    document.querySelectorAll("[data-since]").forEach(function (el) {
      var at = Date.parse(el.getAttribute("data-since"));
      if (!isNaN(at)) el.textContent = span((now - at) / 1000) + " ago";
    });
  }

  // -- help ------------------------------------------------------------------
  var help = document.getElementById("help");
  function toggleHelp() {
    if (!help || typeof help.showModal !== "function") return;
    if (help.open) help.close();
    else help.showModal();
  }
  document.querySelectorAll("[data-action=help]").forEach(function (button) {
    button.addEventListener("click", toggleHelp);
  });

  // -- list: selection -------------------------------------------------------
  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("#items .item"));
  }
  var selectedKey = null;

  function select(row) {
    rows().forEach(function (r) {
      r.classList.remove("selected");
    });
    if (!row) return;
    row.classList.add("selected");
    selectedKey = row.getAttribute("data-key");
    var link = row.querySelector("a.open");
    if (link) link.focus();
  }

  function move(step) {
    var all = rows();
    if (!all.length) return;
    var at = all.findIndex(function (r) {
      return r.getAttribute("data-key") === selectedKey;
    });
    var next = at < 0 ? (step > 0 ? 0 : all.length - 1) : Math.min(all.length - 1, Math.max(0, at + step));
    select(all[next]);
  }

  // -- detail: actions -------------------------------------------------------
  function go(rel) {
    var link = document.querySelector("[data-nav=" + rel + "]");
    if (link) link.click();
  }

  function focusId(id) {
    var el = document.getElementById(id);
    if (el) {
      el.focus();
      if (el.scrollIntoView) el.scrollIntoView({ block: "center" });
    }
    return el;
  }

  function openEdit() {
    var panel = document.getElementById("edit-panel");
    if (!panel) return;
    panel.open = true;
    focusId("edited-text");
  }

  // -- keys ------------------------------------------------------------------
  function typing(target) {
    var tag = target && target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable);
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(event.target)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (help && help.open && event.key !== "?") return;
    var key = event.key;
    var handled = true;
    if (key === "?") toggleHelp();
    else if (lastKey === "g" && key === "i") window.location.href = "/inbox";
    else if (page === "list" && key === "j") move(1);
    else if (page === "list" && key === "k") move(-1);
    else if (page === "detail" && key === "j") go("next");
    else if (page === "detail" && key === "k") go("prev");
    else if (page === "detail" && key === "a") {
      var approve = focusId("approve");
      if (approve) approve.classList.add("armed");
    } else if (page === "detail" && key === "r") focusId("reject-reason");
    else if (page === "detail" && key === "e") openEdit();
    else handled = key === "g";
    lastKey = key;
    if (handled) event.preventDefault();
  });

  document.addEventListener("focusout", function (event) {
    if (event.target && event.target.id === "approve") event.target.classList.remove("armed");
  });

  // -- list: polling ---------------------------------------------------------
  var items = document.getElementById("items");
  var announce = document.getElementById("announce");

  function poll() {
    if (!items || document.hidden) return;
    fetch(items.getAttribute("data-poll"), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      cache: "no-store",
    })
      .then(function (response) {
        if (response.status === 401) {
          window.location.href = "/inbox/sign-in?next=" + encodeURIComponent(location.pathname + location.search);
          return null;
        }
        return response.ok ? response.json() : null;
      })
      .then(function (data) {
        if (!data || !data.html) return;
        document.title = data.title;
        if (data.signature === items.getAttribute("data-signature")) return;
        var news = update(data.html, false);
        items.setAttribute("data-signature", data.signature);
        var count = document.getElementById("count");
        if (count) count.textContent = String(data.count);
        if (announce && news[0] + news[1] > 0) {
          var added = news[0] + news[1];
          announce.textContent =
            added + " new approval" + (added === 1 ? "" : "s") +
            (news[1] ? ", " + news[1] + " due sooner: press Show to list " + (news[1] === 1 ? "it" : "them") : "");
        }
        tick();
      })
      .catch(function () {
        /* the next poll tries again */
      });
  }

  // Brings the list up to date row by row: a row whose data-sig is unchanged
  // keeps its element (so it stays put: no layout shift, focus and selection
  // untouched), a changed row is replaced in place, a gone one is removed, and
  // a new one goes where the deadline order puts it, unless that is above a
  // row already shown: such rows are held back behind the "Show" button (a
  // row must never move under the reviewer's pointer), unless `all`.
  // Returns [new rows shown, new rows held back].
  var heldButton = document.getElementById("show-held");
  var heldHtml = null;

  function keyOf(row) {
    return row.getAttribute("data-key");
  }

  function update(html, all) {
    var fresh = document.createElement("div");
    fresh.innerHTML = html;
    var list = items.querySelector("ol.items");
    var freshList = fresh.querySelector("ol.items");
    var oldRows = {};
    rows().forEach(function (r) {
      oldRows[keyOf(r)] = r;
    });
    var wanted = freshList ? Array.prototype.slice.call(freshList.children) : [];
    var lastShown = -1;
    wanted.forEach(function (r, at) {
      if (oldRows[keyOf(r)]) lastShown = at;
    });
    var held = all
      ? []
      : wanted.filter(function (r, at) {
          return !oldRows[keyOf(r)] && at < lastShown;
        });
    var added = wanted.filter(function (r) {
      return !oldRows[keyOf(r)];
    }).length - held.length;
    showHeld(held.length ? html : null, held.length);
    if (!list || !freshList) {
      items.innerHTML = html;
      restoreSelection(null);
      return [added, 0];
    }
    var active = document.activeElement;
    var focusedRow = active && list.contains(active) ? active.closest(".item") : null;
    var focusedKey = focusedRow && keyOf(focusedRow);
    var keep = {};
    wanted.forEach(function (r) {
      keep[keyOf(r)] = true;
    });
    Object.keys(oldRows).forEach(function (key) {
      if (!keep[key]) oldRows[key].remove();
    });
    wanted
      .filter(function (r) {
        return held.indexOf(r) < 0;
      })
      .forEach(function (row, at) {
        var node = oldRows[keyOf(row)];
        if (node && node.getAttribute("data-sig") !== row.getAttribute("data-sig")) {
          list.replaceChild(row, node);
          node = row;
        } else if (!node) {
          node = row;
        }
        if (list.children[at] !== node) list.insertBefore(node, list.children[at] || null);
      });
    // The rest of the fragment (a note about runs not readable just now).
    Array.prototype.slice.call(items.children).forEach(function (el) {
      if (el !== list) el.remove();
    });
    Array.prototype.slice.call(fresh.children).forEach(function (el) {
      if (el !== freshList) items.appendChild(el);
    });
    restoreSelection(focusedKey);
    return [added, held.length];
  }

  function showHeld(html, count) {
    heldHtml = html;
    if (!heldButton) return;
    heldButton.textContent =
      "Show " + count + " new approval" + (count === 1 ? "" : "s") + " due sooner";
    heldButton.classList.toggle("on", count > 0);
  }

  if (heldButton) {
    heldButton.addEventListener("click", function () {
      if (!heldHtml) return;
      var before = {};
      rows().forEach(function (r) {
        before[keyOf(r)] = true;
      });
      update(heldHtml, true);
      var first = rows().filter(function (r) {
        return !before[keyOf(r)];
      })[0];
      if (first) select(first);
    });
  }

  function restoreSelection(focusedKey) {
    var keep = focusedKey || selectedKey;
    if (!keep) return;
    var again = rows().filter(function (r) {
      return r.getAttribute("data-key") === keep;
    })[0];
    if (!again) return;
    again.classList.add("selected");
    var link = again.querySelector("a.open");
    if (focusedKey && link && document.activeElement !== link) link.focus();
  }

  // -- citations: open the passage a citation links to ------------------------
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    var target = id && document.getElementById(id);
    if (target && target.tagName === "DETAILS") {
      target.open = true;
      var summary = target.querySelector("summary");
      if (summary) summary.focus();
    }
  }
  window.addEventListener("hashchange", openTarget);

  // -- start -----------------------------------------------------------------
  tick();
  window.setInterval(tick, 1000);
  if (items) {
    var every = parseInt(items.getAttribute("data-poll-ms"), 10) || 2500;
    window.setInterval(poll, every);
  }
  openTarget();
  var preview = document.getElementById("preview");
  if (preview) preview.focus();
})();
