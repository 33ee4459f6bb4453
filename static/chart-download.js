// Chart downloads for a paper: each chart of the dashboard gets an SVG and a PNG link.
// The charts are self-contained SVG (fills inline, no stylesheet), so the file is the markup.
(function () {
  "use strict";

  function fileName(svg, extension) {
    const label = (svg.getAttribute("aria-label") || "chart").split(".")[0];
    const slug = label.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
    return (slug || "chart") + "." + extension;
  }

  function svgText(svg) {
    const copy = svg.cloneNode(true);
    copy.setAttribute("xmlns", "http://www.w3.org/2000/svg");
    const box = svg.viewBox && svg.viewBox.baseVal;
    if (box && box.width) {
      copy.setAttribute("width", box.width);
      copy.setAttribute("height", box.height);
    }
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + new XMLSerializer().serializeToString(copy);
  }

  function download(blob, name) {
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = url;
    link.download = name;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
  }

  function downloadPng(svg) {
    const box = svg.viewBox.baseVal;
    const scale = 3; // print resolution for a figure
    const image = new Image();
    image.onload = function () {
      const canvas = document.createElement("canvas");
      canvas.width = Math.round(box.width * scale);
      canvas.height = Math.round(box.height * scale);
      const context = canvas.getContext("2d");
      context.fillStyle = "#ffffff";
      context.fillRect(0, 0, canvas.width, canvas.height);
      context.drawImage(image, 0, 0, canvas.width, canvas.height);
      canvas.toBlob(function (blob) { download(blob, fileName(svg, "png")); }, "image/png");
    };
    image.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(svgText(svg));
  }

  function button(text, title, onClick) {
    const element = document.createElement("button");
    element.type = "button";
    element.className = "link-button";
    element.textContent = text;
    element.title = title;
    element.addEventListener("click", onClick);
    return element;
  }

  document.querySelectorAll("svg.chart").forEach(function (svg) {
    const bar = document.createElement("p");
    bar.className = "chart-downloads small";
    bar.append("Download: ");
    bar.append(button("SVG", "the chart as SVG, for a paper", function () {
      download(new Blob([svgText(svg)], { type: "image/svg+xml" }), fileName(svg, "svg"));
    }));
    bar.append(" ");
    bar.append(button("PNG", "the chart as PNG at three times its size", function () {
      downloadPng(svg);
    }));
    svg.insertAdjacentElement("afterend", bar);
  });
})();
