// embed.js — puts the chat widget on any page, as an iframe, in place of
// this script tag:
//
//   <script src="https://chat.example/embed.js" data-server="https://chat.example"
//           data-room="support" data-token="…" data-height="500"></script>
//
// data-server defaults to where this script came from; data-room to
// "lobby"; data-token (a site token) is optional when the chat admits
// guests; data-height is in pixels (default 500); data-width is any CSS
// width (default 100%); data-title names the frame for screen readers.
(function () {
  'use strict';
  var script = document.currentScript;
  if (!script) return;
  var d = script.dataset;
  var server = (d.server || new URL(script.src, location.href).origin).replace(/\/+$/, '');
  var url = new URL(server + '/embed');
  url.searchParams.set('room', d.room || 'lobby');
  if (d.token) url.searchParams.set('token', d.token);

  var frame = document.createElement('iframe');
  frame.src = url.href;
  frame.title = d.title || 'Chat: ' + (d.room || 'lobby');
  frame.loading = 'lazy';
  frame.referrerPolicy = 'origin';
  frame.className = 'chat-embed';
  frame.style.width = d.width || '100%';
  frame.style.height = (parseInt(d.height, 10) || 500) + 'px';
  frame.style.border = '1px solid rgba(127, 127, 127, 0.35)';
  frame.style.borderRadius = '12px';
  frame.style.display = 'block';
  frame.style.boxSizing = 'border-box';
  frame.style.colorScheme = 'normal';
  script.parentNode.insertBefore(frame, script.nextSibling);
})();
