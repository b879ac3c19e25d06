// regulars segments: the rule builder. It edits the rule JSON in the textarea name="rule"
// (what the form saves and htmx posts to /segments/preview) through nested rows of
// conditions and AND / OR / NOT groups; the textarea stays editable for power users.
// Also lets htmx swap the 4xx fragments (422 preview, 404 explain) into their targets.
(function () {
  "use strict";

  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    var status = event.detail.xhr.status;
    if (status >= 400 && status < 500 && target && target.hasAttribute("data-swap-errors")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  var KINDS = [
    ["and", "All of (AND)"], ["or", "Any of (OR)"], ["not", "Not (NOT)"],
    ["profile", "Profile field or trait"], ["fact", "Fact"], ["event", "Performed event"],
    ["consent", "Consent"], ["reachable", "Reachable by"], ["segment", "Segment membership"]
  ];
  var DURATION_OPS = ["within_last", "within_next", "not_within_last", "anniversary_within"];
  var NO_VALUE_OPS = ["exists", "missing"];
  var OP_WORDS = {
    equals: "is", not_equals: "is not", in: "is one of", not_in: "is none of",
    contains: "contains", starts_with: "starts with", exists: "is set", missing: "is not set",
    gt: "more than", gte: "at least", lt: "less than", lte: "at most", between: "between",
    before: "before", after: "after", within_last: "within the last",
    within_next: "within the next", not_within_last: "not within the last",
    anniversary_within: "anniversary within"
  };

  function opChoices(ops) {
    return ops.map(function (op) { return [op, OP_WORDS[op] || op]; });
  }
  var options, root, textarea, holder;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (name === "text") node.textContent = attrs[name];
      else node.setAttribute(name, attrs[name]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  function select(label, values, current, onChange) {
    var box = el("select", { "aria-label": label });
    values.forEach(function (value) {
      var pair = Array.isArray(value) ? value : [value, value];
      var option = el("option", { value: pair[0], text: pair[1] });
      if (String(pair[0]) === String(current)) option.selected = true;
      box.appendChild(option);
    });
    box.addEventListener("change", function () { onChange(box.value); });
    return box;
  }

  function input(label, value, onInput, attrs) {
    var box = el("input", Object.assign({ "aria-label": label, value: value }, attrs || {}));
    box.addEventListener("input", function () { onInput(box.value); });
    return box;
  }

  function defaults(kind) {
    switch (kind) {
      case "and": case "or": return { type: kind, rules: [defaults("event")] };
      case "not": return { type: "not", rule: defaults("event") };
      case "profile": return { type: "profile", field: "email", op: "exists" };
      case "fact": return { type: "fact", field: "orders_count", op: "gte", value: 1 };
      case "event": return { type: "event", name: "Order Completed" };
      case "consent": return { type: "consent", channel: "email", status: "subscribed" };
      case "reachable": return { type: "reachable", channel: "email" };
      default: return { type: "segment", segment: options.segments[0] || "" };
    }
  }

  function convert(node, kind) {
    var kids = node.type === "not" ? [node.rule] : node.rules;
    if (kids && (kind === "and" || kind === "or")) return { type: kind, rules: kids };
    if (kids && kind === "not") {
      return { type: "not", rule: kids.length === 1 ? kids[0] : { type: "and", rules: kids } };
    }
    return defaults(kind);
  }

  function scalar(text) {
    var t = text.trim();
    if (t === "true" || t === "false") return t === "true";
    if (t !== "" && String(Number(t)) === t) return Number(t);
    return t;
  }

  function valueText(value) {
    if (value === undefined || value === null) return "";
    if (Array.isArray(value)) return value.join(", ");
    if (typeof value === "object" && "amount" in value) return value.amount + " " + value.unit;
    return String(value);
  }

  function parseValue(op, text) {
    if (NO_VALUE_OPS.indexOf(op) >= 0) return undefined;
    if (op === "in" || op === "not_in" || op === "between") {
      return text.split(",").map(scalar).filter(function (v) { return v !== ""; });
    }
    if (DURATION_OPS.indexOf(op) >= 0) {
      var found = /^\s*(\d+)\s*(minute|hour|day|week)s?\s*$/i.exec(text);
      return found ? { amount: Number(found[1]), unit: found[2].toLowerCase() + "s" } : text;
    }
    return scalar(text);
  }

  function setValue(node, text) {
    var value = parseValue(node.op, text);
    if (value === undefined) delete node.value; else node.value = value;
  }

  function comparison(node, fieldBox, ops) {
    var valueBox = input("Value", valueText(node.value), function (text) {
      setValue(node, text); changed();
    }, { placeholder: "value, list a, b or 7 days" });
    valueBox.hidden = NO_VALUE_OPS.indexOf(node.op) >= 0;
    var opBox = select("Operator", opChoices(ops), node.op, function (op) {
      node.op = op; setValue(node, valueBox.value);
      valueBox.hidden = NO_VALUE_OPS.indexOf(op) >= 0; changed();
    });
    return [fieldBox, opBox, valueBox];
  }

  function eventFields(node) {
    var last = node.window && node.window.last;
    var fixed = node.window && !node.window.last;
    var aggregate = node.aggregate || "count";
    var property = input("Property to add up", node.property || "", function (text) {
      if (text.trim()) node.property = text.trim(); else delete node.property;
      changed();
    }, { placeholder: "property" });
    property.hidden = aggregate === "count";
    var amount = input("Window length in units (empty: ever)", last ? String(last.amount) : "",
      function () { setWindow(node, amount, unit); }, { inputmode: "numeric", size: "4" });
    var unit = select("Window unit", options.units, last ? last.unit : "days",
      function () { setWindow(node, amount, unit); });
    return [
      input("Event name", node.name || "", function (text) { node.name = text; changed(); }),
      select("Measure", ["count", "sum", "avg"], aggregate, function (value) {
        if (value === "count") { delete node.aggregate; delete node.property; }
        else node.aggregate = value;
        property.hidden = value === "count"; changed();
      }),
      property,
      select("Comparison", opChoices(options.aggregateOps), node.op || "gte", function (op) {
        node.op = op; changed();
      }),
      input("Times or amount", valueText(node.value === undefined ? 1 : node.value), function (t) {
        node.value = parseValue(node.op || "gte", t); changed();
      }, { inputmode: "decimal", size: "6" }),
      el("span", { text: fixed ? "between fixed dates (edit the JSON)" : "in the last" }),
      fixed ? null : amount,
      fixed ? null : unit
    ];
  }

  function setWindow(node, amountBox, unitBox) {
    var amount = Number(amountBox.value.trim() || 0);
    if (amount > 0) node.window = { last: { amount: amount, unit: unitBox.value } };
    else delete node.window;
    changed();
  }

  function fields(node) {
    switch (node.type) {
      case "profile":
        return comparison(node, input("Field", node.field || "", function (text) {
          node.field = text.trim(); changed();
        }, { list: "rb-profile-fields", placeholder: "email or traits.city" }), options.ops);
      case "fact":
        return comparison(node, select("Fact", options.factFields, node.field, function (f) {
          node.field = f; changed();
        }), options.ops);
      case "event": return eventFields(node);
      case "consent":
        return [
          select("Channel", options.channels, node.channel, function (v) { node.channel = v; changed(); }),
          input("Topic (empty: the whole channel)", node.topic || "", function (text) {
            if (text.trim()) node.topic = text.trim(); else delete node.topic;
            changed();
          }, { placeholder: "topic (optional)" }),
          select("Status", options.consentStatuses, node.status || "subscribed", function (v) {
            node.status = v; changed();
          })
        ];
      case "reachable":
        return [select("Channel", options.reachability, node.channel, function (v) {
          node.channel = v; changed();
        })];
      case "segment":
        return [
          select("In or not in", [["true", "is in"], ["false", "is not in"]],
            node.member === false ? "false" : "true",
            function (v) { if (v === "true") delete node.member; else node.member = false; changed(); }),
          select("Segment", options.segments.length ? options.segments : [["", "no other segments"]],
            node.segment, function (v) { node.segment = v; changed(); })
        ];
      default: return [];
    }
  }

  function rawEditor(node, replace) {
    var box = el("textarea", { "aria-label": "This condition as JSON", rows: "4" });
    box.value = JSON.stringify(node, null, 2);
    box.addEventListener("input", function () {
      try { replace(JSON.parse(box.value), false); } catch (error) { /* keep typing */ }
    });
    return box;
  }

  function renderNode(node, path, replace, remove) {
    var group = node.type === "and" || node.type === "or" || node.type === "not";
    var known = KINDS.some(function (kind) { return kind[0] === node.type; });
    var kinds = known ? KINDS : KINDS.concat([[node.type, node.type + " (as JSON)"]]);
    var box = el("div", { class: "rb-node" + (group ? " rb-group" : ""), "data-path": path,
      role: "group", "aria-label": "Condition " + (path || "(whole rule)") });
    var row = el("div", { class: "rb-row" }, [
      select("Kind of condition", kinds, node.type, function (kind) {
        replace(convert(node, kind), true, path);
      })
    ].concat(known ? fields(node) : [rawEditor(node, replace)]));
    if (remove) {
      var drop = el("button", { type: "button", class: "quiet", text: "Remove",
        "aria-label": "Remove condition " + path });
      drop.addEventListener("click", remove);
      row.appendChild(drop);
    }
    box.appendChild(row);
    if (group) box.appendChild(renderChildren(node, path));
    return box;
  }

  function renderChildren(node, path) {
    var prefix = path ? path + "." : "";
    var list = el("div", { class: "rb-children" });
    var kids = node.type === "not" ? [node.rule] : node.rules;
    kids.forEach(function (child, index) {
      var childPath = node.type === "not" ? prefix + "rule" : prefix + "rules." + index;
      var replace = function (next, rerender, focus) {
        if (node.type === "not") node.rule = next; else node.rules[index] = next;
        changed(rerender, focus);
      };
      var remove = node.type === "not" || kids.length < 2 ? null : function () {
        node.rules.splice(index, 1); changed(true, path);
      };
      list.appendChild(renderNode(child, childPath, replace, remove));
    });
    if (node.type !== "not") {
      [["Add condition", "event"], ["Add group", "or"]].forEach(function (pair) {
        var add = el("button", { type: "button", class: "quiet", text: pair[0] });
        add.addEventListener("click", function () {
          node.rules.push(defaults(pair[1]));
          changed(true, prefix + "rules." + (node.rules.length - 1));
        });
        list.appendChild(add);
      });
    }
    return list;
  }

  function draw(focusPath) {
    holder.textContent = "";
    holder.appendChild(renderNode(root, "", function (next, rerender, focus) {
      root = next; changed(rerender, focus);
    }, null));
    if (focusPath !== undefined && focusPath !== null) {
      var target = holder.querySelector('[data-path="' + focusPath + '"] select');
      if (target) target.focus();
    }
  }

  // Write the JSON the form sends; a structural change redraws and tells htmx to preview.
  function changed(rerender, focusPath) {
    textarea.value = JSON.stringify(root, null, 2);
    if (rerender) {
      draw(focusPath);
      textarea.dispatchEvent(new Event("change", { bubbles: true }));
    }
  }

  function load() {
    try {
      var parsed = JSON.parse(textarea.value);
      if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error();
      root = parsed; draw(null);
    } catch (error) {
      holder.textContent = "";
      holder.appendChild(el("p", { class: "note",
        text: "The JSON below does not parse yet; fix it there and the conditions come back." }));
    }
  }

  function markErrors(fragment) {
    holder.querySelectorAll(".rb-invalid").forEach(function (n) { n.classList.remove("rb-invalid"); });
    var flagged = fragment.querySelector("[data-error-paths]");
    if (!flagged) return;
    flagged.getAttribute("data-error-paths").split(" ").forEach(function (path) {
      var parts = path.replace(/^rule\.?/, "").split(".");
      for (var n = parts.length; n >= 0; n--) {
        var found = holder.querySelector('[data-path="' + parts.slice(0, n).join(".") + '"]');
        if (found) { found.classList.add("rb-invalid"); return; }
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    holder = document.getElementById("rule-builder");
    textarea = document.getElementById("rule");
    if (!holder || !textarea) return;
    options = JSON.parse(holder.getAttribute("data-options"));
    textarea.addEventListener("input", load);
    document.addEventListener("htmx:afterSwap", function (event) {
      if (event.detail.target.id === "preview") markErrors(event.detail.target);
    });
    load();
  });
})();
