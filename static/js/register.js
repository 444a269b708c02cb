// Register a model: pick a folder or files, upload them with a progress bar,
// then show what the server read (an HTML fragment) for the user to confirm.
// No inline script anywhere: the site runs under a Content-Security-Policy.
(function () {
  "use strict";
  var form = document.getElementById("register-upload");
  if (!form) return;
  var folderInput = document.getElementById("folder-input");
  var filesInput = document.getElementById("files-input");
  var chosen = document.getElementById("chosen");
  var progress = document.getElementById("upload-progress");
  var status = document.getElementById("upload-status");
  var button = document.getElementById("upload-button");
  var result = document.getElementById("register-result");
  var maxBytes = parseInt(form.getAttribute("data-max-bytes") || "0", 10);
  var selection = [];
  var skipped = [];

  function human(n) {
    var units = ["B", "KB", "MB", "GB", "TB"], i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return n.toFixed(i ? 1 : 0) + " " + units[i];
  }

  // A folder holds flat model files; sub-folders and hidden files (.git…) are left out.
  function pick(list) {
    selection = []; skipped = [];
    Array.prototype.forEach.call(list, function (file) {
      var rel = file.webkitRelativePath || file.name;
      var depth = rel.split("/").length - (file.webkitRelativePath ? 1 : 0);
      if (file.name.charAt(0) === "." || depth > 1) { skipped.push(rel); return; }
      selection.push(file);
    });
    var total = selection.reduce(function (s, f) { return s + f.size; }, 0);
    chosen.textContent = selection.length
      ? selection.length + " files, " + human(total) + ": " + selection.map(function (f) { return f.name; }).join(", ")
      : "No files chosen.";
    if (skipped.length) chosen.textContent += " — left out: " + skipped.join(", ");
    if (maxBytes && total > maxBytes) {
      status.textContent = "Too large: the limit is " + human(maxBytes) + ".";
    } else {
      status.textContent = "";
    }
  }
  folderInput.addEventListener("change", function () { filesInput.value = ""; pick(folderInput.files); });
  filesInput.addEventListener("change", function () { folderInput.value = ""; pick(filesInput.files); });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!selection.length) { status.textContent = "Choose a folder or files first."; return; }
    var data = new FormData();
    data.append("csrfmiddlewaretoken", form.elements.namedItem("csrfmiddlewaretoken").value);
    var model = form.elements.namedItem("model");
    if (model) data.append("model", model.value);
    selection.forEach(function (file) { data.append("files", file, file.name); });
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
    progress.hidden = false; progress.value = 0; button.disabled = true;
    status.textContent = "Uploading…";
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        progress.value = Math.round((e.loaded / e.total) * 100);
        status.textContent = "Uploading… " + human(e.loaded) + " of " + human(e.total);
      }
    });
    xhr.upload.addEventListener("load", function () { status.textContent = "Reading the folder…"; });
    xhr.addEventListener("load", function () {
      button.disabled = false;
      progress.value = 100;
      status.textContent = xhr.status < 300 ? "Read. Check and confirm below." : "Refused (" + xhr.status + ").";
      result.innerHTML = xhr.responseText;  // our own server's HTML fragment
      var first = result.querySelector("input[name=name]");
      if (first) first.focus();
    });
    xhr.addEventListener("error", function () {
      button.disabled = false;
      status.textContent = "The upload failed (network error); try again.";
    });
    xhr.send(data);
  });
})();
