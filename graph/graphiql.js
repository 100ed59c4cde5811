"use strict";
(function () {
  // The query the page opens on, given by the server as JSON: never spliced into code.
  const welcomeQuery = JSON.parse(document.getElementById("welcome-query").textContent);

  // ?q=, ?variables= and ?headers= open the page on a query, its variables and its
  // headers: `usage-events demo` prints a link whose headers hold the API key.
  const parameters = {};
  for (const entry of window.location.search.slice(1).split("&")) {
    const separator = entry.indexOf("=");
    if (separator < 0) continue;
    try {
      parameters[decodeURIComponent(entry.slice(0, separator))] = decodeURIComponent(
        entry.slice(separator + 1),
      );
    } catch (error) {
      // A malformed escape costs that parameter, not the page.
      if (!(error instanceof URIError)) throw error;
    }
  }

  // Edits of the query and its variables go into the address, so a reload or a shared
  // link opens the same query.
  function updateURL(changes) {
    Object.assign(parameters, changes);
    const search = Object.keys(parameters)
      .filter((key) => Boolean(parameters[key]))
      .map((key) => encodeURIComponent(key) + "=" + encodeURIComponent(parameters[key]))
      .join("&");
    window.history.replaceState(null, "", "?" + search);
  }

  const fetcher = GraphiQL.createFetcher({
    url: window.location.origin + window.location.pathname,
  });
  const explorer = GraphiQLPluginExplorer.explorerPlugin();

  function Page() {
    const [query, setQuery] = React.useState(parameters.q || welcomeQuery);
    const [variables, setVariables] = React.useState(parameters.variables);
    const [headers, setHeaders] = React.useState(parameters.headers);

    return React.createElement(GraphiQL, {
      fetcher: fetcher,
      plugins: [explorer],
      query: query,
      variables: variables,
      headers: headers,
      onEditQuery: (value) => {
        setQuery(value);
        updateURL({ q: value });
      },
      onEditVariables: (value) => {
        setVariables(value);
        updateURL({ variables: value });
      },
      onEditHeaders: setHeaders,
      defaultEditorToolsVisibility: true,
      isHeadersEditorEnabled: true,
      // What GraphiQL remembers (tabs, history, the headers with the API key) lives in the
      // tab's sessionStorage: it survives a reload and is gone with the tab, never kept in
      // the browser profile's localStorage for the next person at this machine.
      storage: window.sessionStorage,
      shouldPersistHeaders: true,
      inputValueDeprecation: true,
    });
  }

  ReactDOM.createRoot(document.getElementById("graphiql")).render(React.createElement(Page));
})();
