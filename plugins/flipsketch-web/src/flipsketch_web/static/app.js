// flipsketch serve: the page. Plain JavaScript, no framework, no network beyond this server.
//
// The canvas is the drawing: pointer events (mouse, pen, touch), a pen and an eraser, undo and
// redo as snapshots of the canvas. Generate posts the drawing as a PNG (or an uploaded file
// as it is, so the server checks it exactly as the command line would) with the options to
// /api/jobs, then follows the job's server-sent events until it is done.
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const ctx = canvas.getContext("2d", { willReadFrequently: true });

// -- drawing -----------------------------------------------------------------------------------
const drawing = {
  tool: "pen",
  undo: [], // ImageData snapshots taken before each change
  redo: [],
  blank: true, // nothing drawn or uploaded: a text-only job
  upload: null, // a dropped or chosen file, sent as it is while nothing is drawn over it
  stroke: null, // the pointer drawing now: {id, x, y}
};
const MAX_UNDO = 50;

function paper() {
  ctx.save();
  ctx.globalCompositeOperation = "source-over";
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.restore();
}

function snapshot() {
  return { image: ctx.getImageData(0, 0, canvas.width, canvas.height),
           blank: drawing.blank, upload: drawing.upload };
}

function restore(state) {
  ctx.putImageData(state.image, 0, 0);
  drawing.blank = state.blank;
  drawing.upload = state.upload;
}

function changing() {
  // Called before every change: it can be undone, and it ends what redo could bring back.
  drawing.undo.push(snapshot());
  if (drawing.undo.length > MAX_UNDO) drawing.undo.shift();
  drawing.redo = [];
  updateHistoryButtons();
}

function updateHistoryButtons() {
  $("undo").disabled = drawing.undo.length === 0;
  $("redo").disabled = drawing.redo.length === 0;
  $("sketch-note").textContent = drawing.blank
    ? "Leave the canvas empty to animate from the text alone."
    : drawing.upload ? `Image: ${drawing.upload.name} (draw on it to change it).`
    : "Your drawing will be animated.";
}

function undo() {
  if (!drawing.undo.length) return;
  drawing.redo.push(snapshot());
  restore(drawing.undo.pop());
  updateHistoryButtons();
}

function redo() {
  if (!drawing.redo.length) return;
  drawing.undo.push(snapshot());
  restore(drawing.redo.pop());
  updateHistoryButtons();
}

function setTool(tool) {
  drawing.tool = tool;
  $("tool-pen").setAttribute("aria-pressed", String(tool === "pen"));
  $("tool-eraser").setAttribute("aria-pressed", String(tool === "eraser"));
}

function canvasPoint(event) {
  const box = canvas.getBoundingClientRect();
  return { x: (event.clientX - box.left) * (canvas.width / box.width),
           y: (event.clientY - box.top) * (canvas.height / box.height) };
}

function penWidth(event) {
  const width = Number($("pen-width").value) * (canvas.width / canvas.getBoundingClientRect().width);
  // A pen's pressure thins and thickens the line; a mouse reports 0.5 while pressed.
  return event.pointerType === "pen" && event.pressure > 0 ? width * (0.4 + event.pressure) : width;
}

function segment(from, to, width) {
  ctx.save();
  ctx.strokeStyle = drawing.tool === "eraser" ? "#ffffff" : "#000000";
  ctx.lineWidth = drawing.tool === "eraser" ? width * 3 : width;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(from.x, from.y);
  ctx.lineTo(to.x, to.y);
  ctx.stroke();
  ctx.restore();
}

canvas.addEventListener("pointerdown", (event) => {
  if (event.button !== 0 || drawing.stroke) return;
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  changing();
  const point = canvasPoint(event);
  drawing.stroke = { id: event.pointerId, ...point };
  segment(point, point, penWidth(event)); // a dot for a click
  drawing.upload = null; // drawn over: the canvas is the drawing now
  drawing.blank = false;
});

canvas.addEventListener("pointermove", (event) => {
  if (!drawing.stroke || event.pointerId !== drawing.stroke.id) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) {
    const point = canvasPoint(e);
    segment(drawing.stroke, point, penWidth(e));
    drawing.stroke.x = point.x;
    drawing.stroke.y = point.y;
  }
});

function endStroke(event) {
  if (!drawing.stroke || event.pointerId !== drawing.stroke.id) return;
  drawing.stroke = null;
  updateHistoryButtons();
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

$("tool-pen").addEventListener("click", () => setTool("pen"));
$("tool-eraser").addEventListener("click", () => setTool("eraser"));
$("undo").addEventListener("click", undo);
$("redo").addEventListener("click", redo);
$("clear").addEventListener("click", () => {
  if (drawing.blank) return;
  changing();
  paper();
  drawing.blank = true;
  drawing.upload = null;
  updateHistoryButtons();
});
$("pen-width").addEventListener("input", () => { $("pen-width-value").value = $("pen-width").value; });

document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement && event.target.type === "text") return;
  const key = event.key.toLowerCase();
  if ((event.ctrlKey || event.metaKey) && key === "z") {
    event.preventDefault();
    event.shiftKey ? redo() : undo();
  } else if ((event.ctrlKey || event.metaKey) && key === "y") {
    event.preventDefault();
    redo();
  } else if (!event.ctrlKey && !event.metaKey && !event.altKey && key === "p") {
    setTool("pen");
  } else if (!event.ctrlKey && !event.metaKey && !event.altKey && key === "e") {
    setTool("eraser");
  }
});

// -- uploading an image --------------------------------------------------------------------------
async function useFile(file) {
  if (!file) return;
  changing();
  paper();
  drawing.upload = file;
  drawing.blank = false;
  try {
    // Shown as the model sees it: fitted into the square on white paper, never stretched.
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(canvas.width / bitmap.width, canvas.height / bitmap.height);
    const w = bitmap.width * scale, h = bitmap.height * scale;
    ctx.drawImage(bitmap, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
    bitmap.close();
    showError(null);
  } catch {
    // The browser cannot show it; the server will say why when it is sent (one line).
    showError(`This browser cannot show '${file.name}'; Generate sends it to the server as it is.`);
  }
  updateHistoryButtons();
}

$("upload").addEventListener("change", (event) => {
  useFile(event.target.files[0]);
  event.target.value = ""; // choosing the same file again is a change too
});
const dropZone = $("drop-zone");
dropZone.addEventListener("dragover", (event) => {
  event.preventDefault();
  dropZone.classList.add("dragging");
});
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("dragging");
  useFile(event.dataTransfer.files[0]);
});

// -- jobs ------------------------------------------------------------------------------------
let current = null; // {job, source}: the job this page is following
const STAGES = { inversion: "Inverting the drawing", sampling: "Sampling",
                 writing: "Writing the files" };
const KINDS = { gif: "GIF", mp4: "MP4", zip: "PNG frames (zip)", svg: "SVG" };

function showError(text) {
  $("error").hidden = !text;
  $("error").textContent = text || "";
}

function setStatus(text, progress) {
  $("status-text").textContent = text;
  const bar = $("progress");
  bar.hidden = progress === undefined;
  if (progress !== undefined) {
    bar.max = progress.total || 1;
    bar.value = progress.done;
  }
}

function busy(on) {
  $("generate").disabled = on;
  $("cancel").disabled = !on;
}

function canvasBlob() {
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

$("job-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(null);
  const form = new FormData();
  form.append("prompt", $("prompt").value);
  form.append("lambda", $("lambda").value);
  for (const name of ["frames", "steps", "seed", "samples", "guidance"]) {
    form.append(name, $(name).value);
  }
  if (drawing.upload) form.append("sketch", drawing.upload, drawing.upload.name);
  else if (!drawing.blank) form.append("sketch", await canvasBlob(), "drawing.png");

  busy(true);
  setStatus("Sending…");
  let response, body;
  try {
    response = await fetch("/api/jobs", { method: "POST", body: form });
    body = await response.json();
  } catch (error) {
    busy(false);
    setStatus("Ready.");
    showError(`The server did not answer (${error.message}); is 'flipsketch serve' running?`);
    return;
  }
  if (!response.ok) {
    busy(false);
    setStatus("Ready.");
    showError(body.error);
    return;
  }
  follow(body);
});

function follow(job) {
  const source = new EventSource(job.urls.events);
  current = { job, source };
  source.addEventListener("state", (event) => {
    const record = JSON.parse(event.data);
    current.job = record;
    if (record.state === "queued") {
      setStatus(record.position ? `Waiting: ${record.position} job${record.position > 1 ? "s" : ""} ahead (queue position ${record.position}).`
                                : "Next in line…");
    } else if (record.state === "running") {
      setStatus("Starting…", { done: 0, total: 1 });
    } else {
      source.close();
      current = null;
      busy(false);
      if (record.state === "done") {
        setStatus(`Done in ${(record.finished - record.started).toFixed(1)} s.`);
        showResult(record, 0);
        addToGallery(record);
      } else if (record.state === "cancelled") {
        setStatus("Cancelled.");
      } else {
        setStatus("Failed.");
        showError(record.error);
      }
    }
  });
  source.addEventListener("progress", (event) => {
    const p = JSON.parse(event.data);
    setStatus(`${STAGES[p.stage] || p.stage}: ${p.done} / ${p.total}`, p);
  });
  source.onerror = () => {
    // EventSource reconnects by itself (with Last-Event-ID); say so if the server is gone.
    if (current && current.source === source && source.readyState === EventSource.CONNECTING) {
      setStatus("Connection lost; reconnecting…");
    }
  };
}

$("cancel").addEventListener("click", async () => {
  if (!current) return;
  $("cancel").disabled = true;
  setStatus("Cancelling…");
  const response = await fetch(current.job.urls.cancel, { method: "POST" });
  if (!response.ok && response.status !== 409) showError((await response.json()).error);
});

// -- results -----------------------------------------------------------------------------------
function showResult(record, index) {
  const result = record.result;
  const sample = result.samples[index];
  const figure = $("result");
  figure.hidden = false;
  figure.dataset.job = record.id;
  figure.dataset.frames = String(result.frames);
  $("result-empty").hidden = true;
  const img = $("result-img");
  img.src = sample.files.gif;
  img.alt = `Animation of '${record.prompt}'`;
  const ranked = result.ranked ? `, rank ${sample.rank} (fidelity ${sample.score.toFixed(3)})` : "";
  $("result-caption").textContent =
    `“${record.prompt}”: ${result.frames} frames, ${result.size} px, seed ${sample.seed}${ranked}`;

  const samples = $("sample-picker");
  samples.replaceChildren();
  samples.hidden = result.samples.length < 2;
  result.samples.forEach((s, k) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = `Sample ${k + 1}`;
    button.setAttribute("aria-pressed", String(k === index));
    button.addEventListener("click", () => showResult(record, k));
    samples.append(button);
  });

  const downloads = $("downloads");
  downloads.replaceChildren();
  for (const [kind, url] of Object.entries(sample.files)) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = url;
    link.download = "";
    link.dataset.kind = kind;
    link.textContent = `Download ${KINDS[kind] || kind}`;
    item.append(link);
    downloads.append(item);
  }
}

function addToGallery(record) {
  $("gallery-empty").hidden = true;
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.title = `Show '${record.prompt}' again`;
  const img = document.createElement("img");
  img.src = record.result.samples[0].files.gif;
  img.alt = "";
  const caption = document.createElement("span");
  caption.textContent = record.prompt;
  button.append(img, caption);
  button.addEventListener("click", () => showResult(record, 0));
  item.append(button);
  $("gallery").prepend(item);
}

// -- start -------------------------------------------------------------------------------------
$("lambda").addEventListener("input", () => {
  $("lambda-value").value = Number($("lambda").value).toFixed(2);
});

async function start() {
  paper();
  updateHistoryButtons();
  try {
    const info = await (await fetch("/api/info")).json();
    $("model-name").textContent = info.model;
    const d = info.defaults;
    $("frames").value = d.frames;
    $("steps").value = d.steps;
    $("seed").value = d.seed;
    $("samples").value = d.samples;
    $("guidance").value = d.guidance;
    $("lambda").value = d.lambda;
    $("lambda-value").value = Number(d.lambda).toFixed(2);
  } catch {
    showError("The server did not answer; is 'flipsketch serve' running?");
  }
  document.body.dataset.ready = "true";
}
start();
